//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use omen_wal::{Lsn, Record, Wal, WalOptions};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

#[path = "../../../tests/cli_support/watchdog.rs"]
mod watchdog;

impl TempDir {
    pub fn new(name: &str) -> Self {
        watchdog::watchdog();
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("omen-wal-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The payload of record `i` in the tests: its number and some bytes derived from it.
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 300) as usize;
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((0..len).map(|j| (i as usize * 31 + j) as u8));
    bytes
}

/// Every record of the WAL from its first LSN.
pub fn read_all(wal: &Wal) -> Vec<Record> {
    wal.reader(wal.first_lsn())
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("records")
}

/// Small segments, so that tests rotate.
pub fn small_segments() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
}

/// The segment files of a WAL directory, in LSN order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Appends `count` test payloads numbered from `from`, returning their LSNs.
pub fn append_numbered(wal: &Wal, from: u64, count: u64) -> Vec<Lsn> {
    (from..from + count)
        .map(|i| wal.append(&payload(i)).expect("append"))
        .collect()
}
