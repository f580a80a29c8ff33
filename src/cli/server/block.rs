//! A session's transaction block: PostgreSQL's explicit blocks (`BEGIN` ... `COMMIT`) and
//! implicit ones (a simple Query holding several statements, an extended-protocol pipeline
//! from its first write to Sync), each over one [`omendb::Transaction`].
//!
//! Every statement of a block runs in its transaction: its writes are buffered there and its
//! reads see them. `COMMIT` (or the end of an implicit block) applies them as one atomic
//! record; an error fails the block, and a failed block applies nothing (statements are
//! refused with `25P02` until `ROLLBACK`, or `ROLLBACK TO` a savepoint). A disconnect drops
//! the transaction: nothing of it was applied.
//!
//! Locking: the transaction sits behind its own mutex, which only a statement's blocking
//! thread holds for long; the block's state (opened how, failed, wrote) has another, which
//! async code takes for a moment.

use std::sync::{Arc, Mutex, PoisonError};

use omendb::{Db, Savepoint, Transaction};
use pgwire::error::PgWireResult;
use pgwire::messages::response::TransactionStatus;

use super::sqlstate;

/// Savepoints one block may hold.
pub const MAX_SAVEPOINTS: usize = 1000;
/// The longest savepoint name (PostgreSQL's identifiers are at most 63 bytes).
pub const MAX_NAME_BYTES: usize = 63;

/// A block's savepoints by name, oldest first.
type Savepoints = Vec<(String, Savepoint)>;

/// A block's transaction, shared with the thread running its statement.
pub type SharedTransaction = Arc<Mutex<Option<Transaction<'static>>>>;

/// What a block is and what happened in it.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockState {
    /// Opened by `BEGIN` (else implicit, ended by its Query's end or by Sync).
    pub explicit: bool,
    /// A statement failed: nothing of the block will be applied.
    pub failed: bool,
    /// A write statement ran in it (its reads must see the transaction's writes).
    pub wrote: bool,
    /// `READ ONLY`: write statements are refused (`25006`).
    pub read_only: bool,
}

/// A session's block, if one is open.
#[derive(Debug, Default)]
pub struct Block {
    state: Mutex<Option<BlockState>>,
    savepoints: Mutex<Savepoints>,
    transaction: SharedTransaction,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Block {
    /// The open block's state.
    pub fn state(&self) -> Option<BlockState> {
        *lock(&self.state)
    }

    /// The status ReadyForQuery reports: idle outside an explicit block (an implicit one
    /// ends before it is sent), failed, or in a transaction.
    pub fn status(&self) -> TransactionStatus {
        match self.state() {
            Some(state) if state.explicit && state.failed => TransactionStatus::Error,
            Some(state) if state.explicit => TransactionStatus::Transaction,
            _ => TransactionStatus::Idle,
        }
    }

    /// Opens a block with a new transaction of `db`. An open implicit block becomes
    /// explicit when `explicit` (as PostgreSQL's `BEGIN` inside a multi-statement Query:
    /// the statements before it join the block); an open explicit one stays as it is.
    pub fn open(&self, db: &Arc<Db>, explicit: bool, read_only: bool) {
        let mut state = lock(&self.state);
        match state.as_mut() {
            Some(open) => open.explicit |= explicit,
            None => {
                *lock(&self.transaction) = Some(db.begin_shared());
                *state = Some(BlockState {
                    explicit,
                    read_only,
                    ..BlockState::default()
                });
            }
        }
    }

    /// `BEGIN [READ ONLY | READ WRITE]`: opens an explicit block, or makes the open implicit
    /// one explicit; either way its mode is `read_only`.
    pub fn begin(&self, db: &Arc<Db>, read_only: bool) {
        self.open(db, true, read_only);
        if let Some(state) = lock(&self.state).as_mut() {
            state.read_only = read_only;
        }
    }

    /// `SET TRANSACTION READ ONLY` / `READ WRITE` in the open block; a read-only block stays
    /// so (`25001`, as PostgreSQL).
    pub fn set_read_only(&self, read_only: bool) -> PgWireResult<()> {
        if let Some(state) = lock(&self.state).as_mut() {
            if state.read_only && !read_only {
                return Err(sqlstate::error(
                    "25001",
                    "cannot set transaction read-write mode inside a read-only transaction",
                ));
            }
            state.read_only = read_only;
        }
        Ok(())
    }

    /// The open block's transaction.
    pub fn transaction(&self) -> Option<SharedTransaction> {
        self.state().map(|_| Arc::clone(&self.transaction))
    }

    /// Records what a statement did in the open block (nothing outside one).
    pub fn note(&self, wrote: bool, failed: bool) {
        if let Some(state) = lock(&self.state).as_mut() {
            state.wrote |= wrote;
            state.failed |= failed;
        }
    }

    /// Ends the block: its state and its transaction (to commit, or drop to roll back).
    pub fn take(&self) -> Option<(BlockState, Option<Transaction<'static>>)> {
        let state = lock(&self.state).take()?;
        lock(&self.savepoints).clear();
        Some((state, lock(&self.transaction).take()))
    }

    /// Ends the block, committing its transaction unless it failed (then nothing is
    /// applied). Returns the state the block had, or the commit's error.
    pub async fn finish(&self) -> Option<Result<BlockState, omendb::Error>> {
        let (state, transaction) = self.take()?;
        let Some(transaction) = transaction.filter(|_| !state.failed) else {
            return Some(Ok(state));
        };
        // The commit appends to the log and may wait for its sync: not on an async worker.
        let committed = tokio::task::spawn_blocking(move || transaction.commit()).await;
        Some(match committed {
            Ok(Ok(_)) => Ok(state),
            Ok(Err(error)) => Err(error),
            Err(joined) => Err(omendb::Error::Unsupported(format!(
                "the commit's thread failed: {joined}"
            ))),
        })
    }

    /// `SAVEPOINT name` (only inside a block, as in PostgreSQL).
    pub fn savepoint(&self, name: String) -> PgWireResult<()> {
        if !self.state().is_some_and(|s| s.explicit) {
            return Err(sqlstate::error(
                "25P01",
                "SAVEPOINT can only be used in transaction blocks",
            ));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(sqlstate::error(
                "42622",
                format!("savepoint name too long: at most {MAX_NAME_BYTES} bytes"),
            ));
        }
        let mut savepoints = lock(&self.savepoints);
        if savepoints.len() >= MAX_SAVEPOINTS {
            return Err(sqlstate::error(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "too many savepoints in this block: at most {MAX_SAVEPOINTS}; RELEASE some"
                ),
            ));
        }
        let Some(at) = lock(&self.transaction).as_ref().map(Transaction::savepoint) else {
            return Err(no_transaction());
        };
        savepoints.push((name, at));
        Ok(())
    }

    /// `RELEASE name`: forgets it and the savepoints set after it; returns its position.
    pub fn release(&self, name: &str) -> PgWireResult<usize> {
        let (mut savepoints, at) = self.find_savepoint(name, "RELEASE SAVEPOINT")?;
        let released = savepoints.split_off(at);
        if let Some(transaction) = lock(&self.transaction).as_mut() {
            for (_, point) in released {
                transaction.release(point);
            }
        }
        Ok(at)
    }

    /// `ROLLBACK TO name`: undoes the writes made since the savepoint, forgets the
    /// savepoints set after it, and makes a failed block usable again; returns its position.
    pub fn rollback_to(&self, name: &str) -> PgWireResult<usize> {
        let (mut savepoints, at) = self.find_savepoint(name, "ROLLBACK TO SAVEPOINT")?;
        let point = savepoints[at].1;
        // The savepoints after it go (the write set forgets them with the rollback).
        savepoints.truncate(at + 1);
        let undone = match lock(&self.transaction).as_mut() {
            Some(transaction) => transaction.rollback_to(point),
            None => return Err(no_transaction()),
        };
        if let Some(state) = lock(&self.state).as_mut() {
            // Past a spill of its writes the block can only be rolled back whole.
            state.failed = undone.is_err();
        }
        undone.map_err(|error| super::sqlstate::from_db(&error))?;
        Ok(at)
    }

    /// The savepoints, and where the latest named `name` is (for `command`, which only an
    /// explicit block takes).
    fn find_savepoint(
        &self,
        name: &str,
        command: &str,
    ) -> PgWireResult<(std::sync::MutexGuard<'_, Savepoints>, usize)> {
        if !self.state().is_some_and(|s| s.explicit) {
            return Err(sqlstate::error(
                "25P01",
                format!("{command} can only be used in transaction blocks"),
            ));
        }
        let savepoints = lock(&self.savepoints);
        let at = savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| missing_savepoint(name))?;
        Ok((savepoints, at))
    }
}

fn missing_savepoint(name: &str) -> pgwire::error::PgWireError {
    sqlstate::error("3B001", format!("savepoint \"{name}\" does not exist"))
}

fn no_transaction() -> pgwire::error::PgWireError {
    sqlstate::error("25P01", "there is no transaction in progress")
}
