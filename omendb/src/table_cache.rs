//! A per-thread cache of table handles, so that point reads skip the catalog's lock.
//!
//! Why: `Db::get` is a handful of dependent cache misses (index, row). Every atomic
//! read-modify-write on its path (taking and releasing the catalog's `RwLock`, cloning the
//! table's `Arc`) is a full fence on x86, which stops the CPU from overlapping one lookup's
//! misses with the next's; measured, each lock pair added ~100 ns to a ~250 ns lookup. A
//! cached handle costs a plain load of the catalog's version instead.
//!
//! Invariants:
//! - An entry is used only while the catalog's version equals the one it was cached at; the
//!   version is bumped under the catalog's write lock after every change and read under its
//!   read lock when an entry is made, so a hit returns the table the catalog held at some
//!   moment during the call (a read racing DDL sees the table as before it).
//! - Entries belong to one `Db` (ids are never reused), so a closed or reopened database is
//!   never read through a stale entry.
//! - A thread keeps at most [`ENTRIES`] handles. A handle keeps its table's allocation alive;
//!   `Db` empties the rows of a dropped table and of every table on close, so what stale
//!   entries in idle threads pin is small.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::Table;

/// Ids of `Db`s in this process.
static NEXT_DB: AtomicU64 = AtomicU64::new(1);

/// Table handles a thread keeps.
const ENTRIES: usize = 4;

/// Which catalog a handle came from: a `Db` and its catalog's version.
#[derive(Debug)]
pub(crate) struct CatalogStamp {
    db: u64,
    version: AtomicU64,
}

impl CatalogStamp {
    pub(crate) fn new() -> Self {
        Self {
            db: NEXT_DB.fetch_add(1, Ordering::Relaxed),
            version: AtomicU64::new(0),
        }
    }

    /// Marks the catalog changed. Call with its write lock held, after the change.
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The version now. Read under the catalog's read lock, it is the version of what the
    /// lock shows.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

struct Entry {
    db: u64,
    version: u64,
    name: Box<str>,
    table: Arc<Table>,
}

thread_local! {
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// Runs `read` on the table `name`: from this thread's cache when the catalog has not
/// changed since the handle was cached, else through `lookup`, which takes the catalog's
/// read lock and returns the table with the version read under it (`None`: no such table).
#[inline]
pub(crate) fn with_table<R>(
    stamp: &CatalogStamp,
    name: &str,
    lookup: impl FnOnce() -> Option<(Arc<Table>, u64)>,
    read: impl FnOnce(&Table) -> R,
) -> Option<R> {
    let version = stamp.version();
    let found = |e: &Entry| e.db == stamp.db && e.version == version && *e.name == *name;
    // The hit path reads through the borrowed entry: no reference count is touched.
    // (`try_with`/`try_borrow`: during thread teardown, or if `read` itself reads a table,
    // the cache is skipped and the lock taken.)
    let mut read = Some(read);
    let hit = CACHE.try_with(|cache| {
        let cache = cache.try_borrow().ok()?;
        let entry = cache.iter().find(|e| found(e))?;
        let read = read.take()?;
        Some(read(&entry.table))
    });
    if let Ok(Some(result)) = hit {
        return Some(result);
    }
    // `read` is only taken on a hit, which returned.
    let read = read?;
    let (table, version) = lookup()?;
    let result = read(&table);
    let _ = CACHE.try_with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.retain(|e| !(e.db == stamp.db && *e.name == *name));
            if cache.len() >= ENTRIES {
                cache.remove(0);
            }
            cache.push(Entry {
                db: stamp.db,
                version,
                name: name.into(),
                table,
            });
        }
    });
    Some(result)
}
