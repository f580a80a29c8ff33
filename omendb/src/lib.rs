//! `omendb`: the OmenDB facade. [`Db`] is the database: tables with an Arrow-typed schema and
//! an `Int64` primary key, atomic durable write batches through the WAL, point reads and
//! scans served by the learned index, and the replicator keeping a Parquet copy fresh for
//! analytics. It also re-exports the engine crates, so users depend on one crate and get
//! matching versions.
//!
//! ```
//! # fn main() -> Result<(), omendb::Error> {
//! # let dir = std::env::temp_dir().join(format!("omendb-doc-{}", std::process::id()));
//! use omendb::{Db, DbOptions, Value, ValueRef, WriteBatch};
//! use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
//! let db = Db::open(&dir, DbOptions::default())?;
//! db.create_table("users", TableSchema {
//!     columns: vec![
//!         ColumnDef::new("id", DataType::Int64, false),
//!         ColumnDef::new("name", DataType::Utf8, true),
//!     ],
//!     key: 0,
//! })?;
//! let mut batch = WriteBatch::new();
//! batch.insert("users", vec![Value::Int64(1), Value::Utf8("ada".into())]);
//! db.write(&batch)?;
//! let row = db.get("users", 1)?.expect("just written");
//! assert_eq!(row.value(1), Some(ValueRef::Utf8("ada")));
//! assert_eq!(row.to_row()[1], Value::Utf8("ada".into()));
//! // Or read a column in place, without building the row:
//! let name = db.get_with("users", 1, |row| row.map(|r| r.value(1).map(|v| v.to_owned())))?;
//! assert_eq!(name.transpose()?, Some(Value::Utf8("ada".into())));
//! # db.close()?; std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! [`Db::sql`] runs SQL through DataFusion (`omen-sql`): queries at a snapshot of every
//! acknowledged write, and the statements that change the database (`CREATE TABLE`,
//! `DROP TABLE`, `ALTER TABLE ... ADD COLUMN`, `INSERT`, `UPDATE`, `DELETE`), each atomic;
//! see `docs/sql.md`. What is not built yet (see `docs/ARCHITECTURE.md`): the RocksDB and
//! tiering layers, and a checkpoint of the in-memory tables (today the whole log is kept and
//! replayed on open).

mod bounded;
mod bounded_aggregate;
mod bulk;
mod checked;
mod datetime_types;
mod db;
mod error;
mod float;
mod float_aggregate;
mod group_commit;
mod integer_literals;
mod interrupt;
mod interruptible;
mod interval_order;
mod join_rows;
mod key_read;
mod large_literal;
mod limits;
mod names;
mod numeric;
mod numeric_input;
mod planning;
mod query_memory;
mod query_meter;
mod rounding;
mod row;
mod spill;
mod sql;
mod statement;
mod stored_row;
mod subquery_positions;
mod table_cache;
mod text_function;
mod timestamp_input;
mod to_char;
mod transaction;
mod write_set;

pub use bounded::DEFAULT_MAX_VALUE_BYTES;
pub use db::{Db, DbOptions, QueryResult, SCAN_CHUNK, WriteBatch};
pub use error::{CancelReason, DataErrorKind, Error, LimitKind, Result};
pub use float::{pg_date_text, pg_float_text, pg_interval_text, pg_timestamp_text};
pub use interrupt::{Interrupt, WeakInterrupt};
pub use limits::{
    DEFAULT_MAX_EXPRESSION_DEPTH, DEFAULT_MAX_STATEMENT_BYTES, DEFAULT_MAX_SUBQUERY_DEPTH,
    MAX_PLACEHOLDER, SqlLimits, check as check_sql, parse_sql,
};
pub use omen_replicator::change::{Value, ValueRef};
pub use omen_sql::{Route, RouteKind};
pub use query_meter::MeteredAllocator;
pub use row::{Row, RowBuf, RowBufValues, RowRef};
pub use sql::{QueryStream, SqlDescription};
pub use transaction::{Savepoint, Transaction, WrittenRows};

/// Arrow, the columnar format of query results (the version `omendb` is built with).
pub use arrow;

/// DataFusion, the SQL engine behind [`Db::sql`] (the version `omendb` is built with).
pub use datafusion;

/// The learned index: [`AlexMap`](alex::AlexMap), an ordered map from integer keys to values.
pub use omen_alex as alex;

/// The write-ahead log: [`Wal`](wal::Wal), durable appends with group commit and recovery.
pub use omen_wal as wal;

/// The replicator: [`WalReplicator`](replicator::WalReplicator), WAL rows to Parquet.
pub use omen_replicator as replicator;
