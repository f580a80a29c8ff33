//! The commit of a transaction too large for one log record: a **group** of records (see
//! `omen_replicator::change`), written under the writer lock so that nothing comes between
//! them, ended by a `commit` record.
//!
//! Order, and why:
//! 1. The parts, each checked for conflicts before it is appended (first committer wins),
//!    written without waiting for an fsync; on any failure an `abort` record ends the group
//!    and nothing of it counts.
//! 2. The `commit` record, durable per the WAL's sync mode: from here the transaction is
//!    committed, and recovery, the replicator and repair apply its parts (they read ahead to
//!    the end of a group before applying it). A crash before leaves an unfinished group,
//!    which `Db::open` ends with `abort`.
//! 3. The index: the parts are read back from the log and applied while the write locks of
//!    every table the transaction wrote are held, and `applied` moves to the commit's LSN
//!    before they are released, so no reader sees part of it (a key read that began before
//!    finds `applied` moved and reads its snapshot's versions instead).
//! 4. The conflict tracker learns the keys after `applied` moved, as for any commit.
//!
//! Memory stays bounded: the rows stream from the write set's runs into records of at most
//! half the record limit, and back from the log one record at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use omen_replicator::change::{self, ChangeEncoder, Entry};
use omen_wal::{Lsn, SyncMode};

use crate::db::{Db, apply_rows};
use crate::error::{Error, Result};
use crate::row::Row;
use crate::transaction::MAX_TRACKED_KEYS;
use crate::write_set::WriteSet;

impl Db {
    /// Commits `writes`, of a transaction that began at `start`, as a group of records.
    /// The caller holds the writer lock and has checked that the tables are unchanged.
    pub(crate) fn commit_group(&self, start: u64, writes: &WriteSet) -> Result<Lsn> {
        self.replicator.throttle(self.throttle_timeout)?;
        let mut first = None;
        let written = self.write_parts(start, writes, &mut first);
        let Some(first) = first else {
            written?;
            return Ok(self.wal.last_lsn());
        };
        if let Err(error) = written {
            // If the log refuses this too, it is poisoned: the next open ends the group.
            let _ = self.wal.append(&change::group_end(first, false));
            return Err(error);
        }
        let commit = self.wal.append(&change::group_end(first, true))?;
        self.apply_group(first, commit.0, writes)?;
        Ok(commit)
    }

    /// Appends the parts; `first` is set at the first one appended.
    fn write_parts(&self, start: u64, writes: &WriteSet, first: &mut Option<u64>) -> Result<()> {
        let part_bytes = (self.max_write_bytes / 2).max(1);
        for (name, table) in &writes.tables {
            let rows: Box<dyn Iterator<Item = Result<(i64, Option<Row>)>>> = match &writes.spill {
                Some(spill) => Box::new(spill.merged(name, Some(&table.rows))),
                None => Box::new(table.rows.iter().map(|(k, row)| Ok((*k, row.clone())))),
            };
            let mut part = ChangeEncoder::part();
            let mut keys = Vec::new();
            for item in rows {
                let (key, row) = item?;
                match &row {
                    Some(row) => part.upsert(name, row),
                    None => part.delete(name, key),
                }
                keys.push(key);
                if part.len() >= part_bytes {
                    let full = std::mem::replace(&mut part, ChangeEncoder::part());
                    self.append_part(start, name, &mut keys, full, first)?;
                }
            }
            if !keys.is_empty() {
                self.append_part(start, name, &mut keys, part, first)?;
            }
        }
        Ok(())
    }

    fn append_part(
        &self,
        start: u64,
        table: &str,
        keys: &mut Vec<i64>,
        part: ChangeEncoder,
        first: &mut Option<u64>,
    ) -> Result<()> {
        self.conflicts.check(start, table, keys.drain(..))?;
        // Durable with the commit record after it (one fsync for the whole group).
        let lsn = self.wal.append_with(&part.finish(), SyncMode::None)?;
        first.get_or_insert(lsn.0);
        Ok(())
    }

    /// Applies the committed group `first..commit` to the index (see the module docs).
    fn apply_group(&self, first: u64, commit: u64, writes: &WriteSet) -> Result<()> {
        // Locked in name order (the write set's), as every holder of several table locks.
        let mut locked: HashMap<&str, _> = writes
            .tables
            .iter()
            .map(|(name, t)| (name.as_ref(), (t.table.write(), t.table.schema.key)))
            .collect();
        let mut keys: Vec<(Arc<str>, i64)> = Vec::new();
        let applied = (|| {
            for record in self.wal.reader_of_written(Lsn(first))? {
                let record = record?;
                let lsn = record.lsn.0;
                if lsn >= commit {
                    break;
                }
                let entries = change::decode(&record.payload).map_err(|e| Error::BadLog {
                    lsn,
                    reason: e.to_string(),
                })?;
                for entry in entries {
                    let Entry::Rows { table, rows } = entry else {
                        continue;
                    };
                    let Some((map, key_index)) = locked.get_mut(table) else {
                        return Err(Error::BadLog {
                            lsn,
                            reason: format!("a transaction group writes {table:?}, not locked"),
                        });
                    };
                    // The keys, for the conflict tracker (which forgets them all past its
                    // capacity: one more than that is enough to tell it).
                    if keys.len() <= MAX_TRACKED_KEYS {
                        let name: Arc<str> = Arc::from(table);
                        for change in rows.clone().flatten() {
                            keys.push((Arc::clone(&name), change_key(&change, *key_index)));
                        }
                    }
                    apply_rows(map, *key_index, table, rows, lsn)?;
                }
            }
            Ok(())
        })();
        // The log holds the commit: the index follows it even after a failure above.
        self.applied.store(commit, Ordering::SeqCst);
        drop(locked);
        self.conflicts.record(
            commit,
            keys.iter().map(|(table, key)| (table.as_ref(), *key)),
        );
        applied
    }
}

/// The key of a row change (`i64::MIN` for a row without one, which apply refuses).
fn change_key(change: &change::RowChange<'_>, key_index: usize) -> i64 {
    match change {
        change::RowChange::Delete(key) => *key,
        change::RowChange::Upsert(values) => match values.clone().nth(key_index) {
            Some(Ok(change::ValueRef::Int64(key))) => key,
            _ => i64::MIN,
        },
    }
}
