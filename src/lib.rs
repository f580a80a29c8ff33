//! `omendb`: the OmenDB facade. Today it re-exports the engine crates that exist, so users
//! depend on one crate and get matching versions; `Db::open`, tables, transactions and SQL
//! arrive with the WAL, replicator and SQL crates (see `docs/ARCHITECTURE.md`).
//!
//! ```
//! use omendb::alex::AlexMap;
//! let map = AlexMap::from_sorted((0..100u64).map(|k| (k, k * 2)))?;
//! assert_eq!(map.get(21), Some(&42));
//! # Ok::<(), omendb::alex::AlexError>(())
//! ```

/// The learned index: [`AlexMap`](alex::AlexMap), an ordered map from integer keys to values.
pub use omen_alex as alex;

/// The write-ahead log: [`Wal`](wal::Wal), durable appends with group commit and recovery.
pub use omen_wal as wal;

/// The replicator: [`WalReplicator`](replicator::WalReplicator), WAL rows to Parquet.
pub use omen_replicator as replicator;
