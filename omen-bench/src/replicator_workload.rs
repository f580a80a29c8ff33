//! The replicator benchmark's table and rows: `orders (id BIGINT key, qty BIGINT, price
//! DOUBLE, sku TEXT of 8–16 characters, at TIMESTAMP)`, every row a pure function of its key so
//! that a reader can check what it finds; and the change records a writer appends for them.

use std::ops::Range;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt64Type};
use omen_replicator::change::{ChangeEncoder, ColumnDef, DataType, TableSchema, Value};
use omen_replicator::{ReplicatorError, TableSnapshot};

/// The table's name.
pub const TABLE: &str = "orders";

/// Columns of the table (the key included).
pub const COLUMNS: usize = 5;

/// 2023-11-14, the timestamps' base, in microseconds since the epoch.
const EPOCH_MICROS: i64 = 1_700_000_000_000_000;

/// The table's schema; `id` is the key.
pub fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("qty", DataType::Int64, true),
            ColumnDef::new("price", DataType::Float64, true),
            ColumnDef::new("sku", DataType::Utf8, true),
            ColumnDef::new("at", DataType::TimestampMicros, true),
        ],
        key: 0,
    }
}

/// SplitMix64's finaliser: well-mixed bits from a key, for values that do not compress to
/// nothing.
fn mix(key: i64) -> u64 {
    let mut z = (key as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `qty` of the row with key `key`.
pub fn qty_of(key: i64) -> i64 {
    (mix(key) % 1000) as i64 + 1
}

/// The row with key `key`: a quantity of 1–1000, a price with cents, an SKU of `sku-` and 4 to
/// 12 hex digits (8–16 characters), and a timestamp a millisecond per key apart.
pub fn row(key: i64) -> [Value; COLUMNS] {
    let h = mix(key);
    let digits = 4 + (h >> 10) as usize % 9;
    let sku = (h >> 16) & ((1u64 << (4 * digits)) - 1);
    [
        Value::Int64(key),
        Value::Int64(qty_of(key)),
        Value::Float64((h >> 20) as f64 % 100_000.0 / 100.0),
        Value::Utf8(format!("sku-{sku:0digits$x}")),
        Value::TimestampMicros(EPOCH_MICROS + key * 1000 + (h % 1000) as i64),
    ]
}

/// The record creating the table.
pub fn create_record() -> Vec<u8> {
    let mut encoder = ChangeEncoder::new();
    encoder.create_table(TABLE, &schema());
    encoder.finish()
}

/// A record upserting the rows with keys `keys`, in order.
pub fn rows_record(keys: Range<i64>) -> Vec<u8> {
    let mut encoder = ChangeEncoder::new();
    for key in keys {
        encoder.upsert(TABLE, &row(key));
    }
    encoder.finish()
}

/// Where a snapshot holds a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// In the rows above the manifest's watermark (buffered or sealed, not yet in a file).
    Delta,
    /// In a Parquet file the manifest lists.
    Files,
    /// Nowhere: the snapshot is stale.
    Missing,
}

/// Looks for the version of key `key` committed at `lsn` in `snapshot`: first in the delta,
/// then in the files whose key and LSN ranges cover it (read and checked like any query's,
/// and resolved at the snapshot). A row found must hold the values [`row`] gave it.
pub fn find_row(snapshot: &TableSnapshot, key: i64, lsn: u64) -> Result<Found, ReplicatorError> {
    if snapshot.lsn < lsn {
        return Ok(Found::Missing);
    }
    if snapshot
        .delta
        .iter()
        .any(|batch| holds(batch, key, Some(lsn)))
    {
        return Ok(Found::Delta);
    }
    let files: Vec<_> = snapshot
        .files
        .iter()
        .filter(|(_, meta)| {
            (meta.min_lsn..=meta.max_lsn).contains(&lsn)
                && (meta.min_key..=meta.max_key).contains(&key)
        })
        .cloned()
        .collect();
    if files.is_empty() {
        return Ok(Found::Missing);
    }
    let narrowed = TableSnapshot {
        lsn: snapshot.lsn,
        schema: snapshot.schema.clone(),
        stored_schema: snapshot.stored_schema.clone(),
        manifest: snapshot.manifest.clone(),
        files,
        delta: Vec::new(),
    };
    // The resolved rows have no hidden columns: the key and the values identify the version.
    if holds(&narrowed.read()?, key, None) {
        Ok(Found::Files)
    } else {
        Ok(Found::Missing)
    }
}

/// Whether `batch` (stored form when `lsn` is given, user form otherwise) has the row of
/// `key` with the `qty` [`row`] gives it (and `_lsn == lsn`).
fn holds(batch: &RecordBatch, key: i64, lsn: Option<u64>) -> bool {
    let (Some(keys), Some(qty)) = (
        batch.column(0).as_primitive_opt::<Int64Type>(),
        batch.column(1).as_primitive_opt::<Int64Type>(),
    ) else {
        return false;
    };
    let lsns = match lsn {
        Some(_) => batch
            .columns()
            .len()
            .checked_sub(2)
            .and_then(|i| batch.column(i).as_primitive_opt::<UInt64Type>()),
        None => None,
    };
    (0..batch.num_rows()).any(|i| {
        keys.value(i) == key
            && qty.is_valid(i)
            && qty.value(i) == qty_of(key)
            && match (lsn, lsns) {
                (Some(lsn), Some(lsns)) => lsns.value(i) == lsn,
                (Some(_), None) => false,
                (None, _) => true,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fit_the_schema_and_skus_are_8_to_16_characters() {
        assert!(schema().validate().is_ok());
        let mut lengths = std::collections::BTreeSet::new();
        for key in 0..10_000 {
            let row = row(key);
            assert_eq!(row[0], Value::Int64(key));
            let Value::Utf8(sku) = &row[3] else {
                panic!("text expected")
            };
            lengths.insert(sku.len());
        }
        assert_eq!(lengths, (8..=16).collect());
    }

    #[test]
    fn a_record_of_rows_is_about_50_bytes_a_row() {
        let bytes = rows_record(0..1000).len();
        assert!((40_000..60_000).contains(&bytes), "{bytes}");
    }
}
