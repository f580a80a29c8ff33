//! The rows point reads return: [`RowBuf`] (owned, what [`Db::get`](crate::Db::get),
//! [`Db::multi_get`](crate::Db::multi_get) and [`Db::scan`](crate::Db::scan) return),
//! [`RowRef`] (borrowed from the index, for [`Db::get_with`](crate::Db::get_with)), and
//! [`Row`] (the values, built from either on demand).
//!
//! Why a row is not returned as values: building them costs two allocations (the slice and
//! each text value) and their frees, about 200 ns on a 700 ns read (measured, see
//! `docs/bench/NOTES.md`). A `RowBuf` is the row's encoded values copied out of the index's
//! value slot: 64 bytes with no allocation for rows whose values take up to 46 bytes.
//!
//! Invariant: the bytes in a table's index were checked when the row entered it (decoded from
//! a checksummed WAL record, every value and its UTF-8 checked: `StoredRow::encode`), and a
//! `RowBuf` is an immutable copy of them, so reading its values cannot fail and is not checked
//! again (checking cost 100 of a 500 ns `Db::get`). Were memory corrupted, a value that does
//! not decode trips a debug assertion and reads as NULL in release builds.

use omen_replicator::change::{Value, ValueRef};

use crate::db::Table;
use crate::error::{Error, Result};
use crate::stored_row::{StoredRow, StoredValues};

/// A row's values in column order.
pub type Row = Box<[Value]>;

/// A row read from a table's index: a copy of its encoded values, decoded on demand
/// (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowBuf {
    key: i64,
    key_index: u32,
    columns: u32,
    stored: StoredRow,
}

impl RowBuf {
    /// Copies `stored`, the row of `key` in `table` (checked when it entered the index).
    #[inline]
    pub(crate) fn copy(table: &Table, key: i64, stored: &StoredRow) -> Self {
        // At most `MAX_COLUMNS` (65535) columns: `TableSchema::validate` bounds them.
        Self {
            key,
            key_index: table.schema.key as u32,
            columns: table.schema.columns.len() as u32,
            stored: stored.clone(),
        }
    }

    /// The row's primary key.
    #[inline]
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Number of columns.
    #[inline]
    pub fn columns(&self) -> usize {
        self.columns as usize
    }

    /// The value of `column` (in the table's column order), or `None` past the last column.
    /// Decodes the values before it, not the ones after.
    #[inline]
    pub fn value(&self, column: usize) -> Option<ValueRef<'_>> {
        self.values().nth(column)
    }

    /// The values in column order.
    #[inline]
    pub fn values(&self) -> RowBufValues<'_> {
        let (key_index, columns) = (self.key_index as usize, self.columns());
        RowBufValues(self.stored.values(self.key, key_index, columns))
    }

    /// The row as owned values.
    pub fn to_row(&self) -> Row {
        self.values().map(ValueRef::to_owned).collect()
    }
}

/// The values of a [`RowBuf`], in column order (see [`RowBuf::values`]).
#[derive(Clone, Debug)]
pub struct RowBufValues<'a>(StoredValues<'a>);

impl<'a> Iterator for RowBufValues<'a> {
    type Item = ValueRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<ValueRef<'a>> {
        Some(match self.0.next()? {
            Ok(value) => value,
            Err(error) => {
                // Checked when the row entered the index (see the module documentation).
                debug_assert!(false, "a checked row failed to decode: {error}");
                ValueRef::Null
            }
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for RowBufValues<'_> {}

/// A row read in place by [`Db::get_with`](crate::Db::get_with): values are decoded from the
/// index on demand, without building the row.
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    pub(crate) table: &'a Table,
    pub(crate) key: i64,
    pub(crate) stored: &'a StoredRow,
}

impl<'a> RowRef<'a> {
    /// The row's primary key.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.table.schema.columns.len()
    }

    /// The value of `column` (in the table's column order), decoding only the values before
    /// it.
    #[inline]
    pub fn value(&self, column: usize) -> Result<ValueRef<'a>> {
        if column >= self.columns() {
            return Err(Error::BadRow {
                table: self.table.name.clone(),
                column: column.to_string(),
                reason: format!("the table has {} columns", self.columns()),
            });
        }
        let (key_index, columns) = (self.table.schema.key, self.columns());
        let value = self.stored.values(self.key, key_index, columns).nth(column);
        value
            .unwrap_or(Ok(ValueRef::Null))
            .map_err(|e| self.table.damaged(self.key, &e))
    }

    /// The whole row, as a [`RowBuf`] (what [`Db::get`](crate::Db::get) returns).
    pub fn to_row_buf(&self) -> RowBuf {
        RowBuf::copy(self.table, self.key, self.stored)
    }

    /// The whole row, as values.
    pub fn to_row(&self) -> Result<Row> {
        self.table.decode(self.key, self.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omen_replicator::change::{ColumnDef, DataType, TableSchema};

    fn table() -> Table {
        let schema = TableSchema {
            columns: vec![
                ColumnDef::new("name", DataType::Utf8, true),
                ColumnDef::new("id", DataType::Int64, false),
            ],
            key: 1,
        };
        Table::new("people", schema)
    }

    /// Bytes that do not decode (memory corrupted: the index holds checked rows only) trip
    /// the debug assertion when read.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a checked row failed to decode")]
    fn a_damaged_row_trips_the_assertion() {
        let bad_tag = StoredRow::Heap(vec![0xEE, 1, 2].into());
        let _ = RowBuf::copy(&table(), 7, &bad_tag).to_row();
    }

    /// The key sits at its column, the stored values around it; past the last column, none.
    #[test]
    fn values_put_the_key_in_its_column() {
        let table = table();
        let (key, stored) =
            crate::stored_row::tests::store(&[Value::Utf8("ada".into()), Value::Int64(3)], 1);
        let row = RowBuf::copy(&table, key, &stored);
        assert_eq!(row.values().len(), 2);
        assert_eq!(row.value(0), Some(ValueRef::Utf8("ada")));
        assert_eq!(row.value(1), Some(ValueRef::Int64(3)));
        assert_eq!(row.value(2), None);
        assert_eq!(
            row.to_row(),
            vec![Value::Utf8("ada".into()), Value::Int64(3)].into_boxed_slice()
        );
    }
}
