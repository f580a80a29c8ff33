//! Fault injection for tests: a [`WalFs`] over the real file system that fails the k-th fsync
//! or write on demand and can simulate a power loss.
//!
//! It models the worst case the kernel allows:
//! - a failed fsync drops the file's unsynced pages (Linux may do this; the PostgreSQL
//!   "fsyncgate" lesson), so a log that retried the fsync and carried on would lose data;
//! - a failed write (ENOSPC) may have written part of the buffer;
//! - a power loss keeps only what was synced: each file is cut back to its last synced length,
//!   and a file whose directory entry was never synced disappears.
//!
//! With [`FaultPlan::pass_syncs_to_os`] off, syncs are only recorded, not issued, which makes
//! loops of thousands of fault cases fast; power loss is then simulated, not real.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::fs::{OsFs, WalFile, WalFs};

/// Whether an injected fault happens once or keeps happening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Only the k-th call fails; later calls succeed.
    Once,
    /// The k-th call and every later one fail.
    Forever,
}

/// Fail the k-th call (1-based) of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The first call that fails, counting from 1.
    pub at: u64,
    /// Whether later calls fail too.
    pub persistence: Persistence,
}

impl Fault {
    fn fires(&self, call: u64) -> bool {
        match self.persistence {
            Persistence::Once => call == self.at,
            Persistence::Forever => call >= self.at,
        }
    }
}

/// What to inject.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultPlan {
    /// Fail a file or directory fsync with EIO (and drop the file's unsynced data).
    pub fail_sync: Option<Fault>,
    /// Fail a write with ENOSPC after writing half of its bytes.
    pub fail_write: Option<Fault>,
    /// Issue real fsyncs (slow, real durability) or only record them (fast, simulated).
    pub pass_syncs_to_os: bool,
}

#[derive(Clone, Copy, Debug)]
struct Tracked {
    synced_len: u64,
    entry_durable: bool,
}

#[derive(Default)]
struct FaultState {
    plan: Mutex<FaultPlan>,
    syncs: AtomicU64,
    writes: AtomicU64,
    files: Mutex<HashMap<PathBuf, Tracked>>,
}

impl FaultState {
    fn plan(&self) -> FaultPlan {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Tracked>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A file system that injects faults; cheap to clone (clones share counters and plan).
#[derive(Clone, Default)]
pub struct FaultyFs {
    state: Arc<FaultState>,
}

impl FaultyFs {
    /// A file system following `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        let fs = Self::default();
        fs.set_plan(plan);
        fs
    }

    /// Replaces the plan (counters keep counting).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self
            .state
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = plan;
    }

    /// Fsyncs (file and directory) attempted so far.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// Writes attempted so far.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Simulates a power loss: every file this file system touched is cut back to its last
    /// synced length, and files whose directory entry was never synced are deleted.
    /// Call it after dropping the WAL, before reopening.
    pub fn simulate_power_loss(&self) -> io::Result<()> {
        let mut files = self.state.files();
        for (path, tracked) in files.drain() {
            if !tracked.entry_durable {
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            } else if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path)
                && file.metadata()?.len() > tracked.synced_len
            {
                file.set_len(tracked.synced_len)?;
            }
        }
        Ok(())
    }

    fn track(&self, path: &Path, tracked: Tracked) {
        self.state.files().insert(path.to_path_buf(), tracked);
    }

    fn wrap(&self, path: &Path, file: Box<dyn WalFile>) -> Box<dyn WalFile> {
        Box::new(FaultyFile {
            path: path.to_path_buf(),
            file,
            state: Arc::clone(&self.state),
        })
    }

    fn sync_fault(&self) -> io::Result<()> {
        let call = self.state.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        match self.state.plan().fail_sync {
            Some(fault) if fault.fires(call) => Err(io::Error::from_raw_os_error(EIO)),
            _ => Ok(()),
        }
    }
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

struct FaultyFile {
    path: PathBuf,
    file: Box<dyn WalFile>,
    state: Arc<FaultState>,
}

impl FaultyFile {
    fn synced_len(&self) -> u64 {
        self.state
            .files()
            .get(&self.path)
            .map_or(0, |t| t.synced_len)
    }

    fn set_synced_len(&self, len: u64) {
        if let Some(tracked) = self.state.files().get_mut(&self.path) {
            tracked.synced_len = len;
        }
    }
}

impl WalFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let call = self.state.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.state.plan().fail_write {
            Some(fault) if fault.fires(call) => {
                self.file.write_all_at(&buf[..buf.len() / 2], offset)?;
                Err(io::Error::from_raw_os_error(ENOSPC))
            }
            _ => self.file.write_all_at(buf, offset),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let call = self.state.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let plan = self.state.plan();
        if plan.fail_sync.is_some_and(|fault| fault.fires(call)) {
            // The kernel may drop dirty pages after a failed writeback: the unsynced tail is gone.
            let synced = self.synced_len();
            if self.file.len()? > synced {
                self.file.set_len(synced)?;
            }
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if plan.pass_syncs_to_os {
            self.file.sync_data()?;
        }
        self.set_synced_len(self.file.len()?);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        if self.synced_len() > len {
            self.set_synced_len(len);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
}

impl WalFs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        OsFs.list(dir)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OsFs.create_new(path)?;
        self.track(
            path,
            Tracked {
                synced_len: 0,
                entry_durable: false,
            },
        );
        Ok(self.wrap(path, file))
    }

    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OsFs.open_rw(path)?;
        let len = file.len()?;
        let mut files = self.state.files();
        files.entry(path.to_path_buf()).or_insert(Tracked {
            synced_len: len,
            entry_durable: true,
        });
        drop(files);
        Ok(self.wrap(path, file))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        OsFs.open_read(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        OsFs.remove(path)?;
        self.state.files().remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)?;
        let mut files = self.state.files();
        if let Some(tracked) = files.remove(from) {
            files.insert(to.to_path_buf(), tracked);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync_fault()?;
        if self.state.plan().pass_syncs_to_os {
            OsFs.sync_dir(dir)?;
        }
        for (path, tracked) in self.state.files().iter_mut() {
            if path.parent() == Some(dir) {
                tracked.entry_durable = true;
            }
        }
        Ok(())
    }
}
