//! A table's unflushed rows, as Arrow builders: one per column, plus `_lsn` and `_op`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::change::{DataType, OP_DELETE, OP_UPSERT, RowValues, TableSchema, ValueRef};
use crate::error::ReplicatorError;

/// Columns a row may have for [`TableBuffer::upsert`] to decode it on the stack.
const STACK_COLUMNS: usize = 16;

enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    TimestampMicros(TimestampMicrosecondBuilder),
    Date32(Date32Builder),
}

impl ColumnBuilder {
    fn new(data_type: DataType) -> Self {
        match data_type {
            DataType::Boolean => Self::Boolean(BooleanBuilder::new()),
            DataType::Int32 => Self::Int32(Int32Builder::new()),
            DataType::Int64 => Self::Int64(Int64Builder::new()),
            DataType::Float64 => Self::Float64(Float64Builder::new()),
            DataType::Utf8 => Self::Utf8(StringBuilder::new()),
            DataType::TimestampMicros => Self::TimestampMicros(TimestampMicrosecondBuilder::new()),
            DataType::Date32 => Self::Date32(Date32Builder::new()),
        }
    }

    /// Appends a value; `false` if its type does not match the column's.
    fn append(&mut self, value: ValueRef<'_>) -> bool {
        match (self, value) {
            (Self::Boolean(b), ValueRef::Null) => b.append_null(),
            (Self::Int32(b), ValueRef::Null) => b.append_null(),
            (Self::Int64(b), ValueRef::Null) => b.append_null(),
            (Self::Float64(b), ValueRef::Null) => b.append_null(),
            (Self::Utf8(b), ValueRef::Null) => b.append_null(),
            (Self::TimestampMicros(b), ValueRef::Null) => b.append_null(),
            (Self::Date32(b), ValueRef::Null) => b.append_null(),
            (Self::Boolean(b), ValueRef::Boolean(v)) => b.append_value(v),
            (Self::Int32(b), ValueRef::Int32(v)) => b.append_value(v),
            (Self::Int64(b), ValueRef::Int64(v)) => b.append_value(v),
            (Self::Float64(b), ValueRef::Float64(v)) => b.append_value(v),
            (Self::Utf8(b), ValueRef::Utf8(v)) => b.append_value(v),
            (Self::TimestampMicros(b), ValueRef::TimestampMicros(v)) => b.append_value(v),
            (Self::Date32(b), ValueRef::Date32(v)) => b.append_value(v),
            _ => return false,
        }
        true
    }

    fn finish(&mut self, cloned: bool) -> ArrayRef {
        macro_rules! done {
            ($b:expr) => {
                if cloned {
                    Arc::new($b.finish_cloned())
                } else {
                    Arc::new($b.finish())
                }
            };
        }
        match self {
            Self::Boolean(b) => done!(b),
            Self::Int32(b) => done!(b),
            Self::Int64(b) => done!(b),
            Self::Float64(b) => done!(b),
            Self::Utf8(b) => done!(b),
            Self::TimestampMicros(b) => done!(b),
            Self::Date32(b) => done!(b),
        }
    }
}

/// Rows appended since the last seal, in LSN order.
pub(crate) struct TableBuffer {
    schema: TableSchema,
    arrow: SchemaRef,
    columns: Vec<ColumnBuilder>,
    lsns: UInt64Builder,
    ops: UInt8Builder,
    rows: usize,
    /// LSN of the first buffered row.
    pub(crate) first_lsn: Option<u64>,
    /// When the first buffered row arrived (clock nanoseconds).
    pub(crate) first_arrival: Option<u64>,
}

impl TableBuffer {
    pub(crate) fn new(schema: TableSchema) -> Self {
        let arrow = Arc::new(schema.stored_arrow_schema());
        let columns = schema
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.data_type))
            .collect();
        Self {
            schema,
            arrow,
            columns,
            lsns: UInt64Builder::new(),
            ops: UInt8Builder::new(),
            rows: 0,
            first_lsn: None,
            first_arrival: None,
        }
    }

    pub(crate) fn schema(&self) -> &TableSchema {
        &self.schema
    }

    pub(crate) fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    fn note_row(&mut self, lsn: u64, now: u64) {
        self.rows += 1;
        self.first_lsn.get_or_insert(lsn);
        self.first_arrival.get_or_insert(now);
    }

    /// Appends an upserted row. On a schema mismatch nothing is appended.
    pub(crate) fn upsert(
        &mut self,
        table: &str,
        lsn: u64,
        now: u64,
        values: RowValues<'_>,
    ) -> Result<(), ReplicatorError> {
        self.upsert_written_before(table, lsn, now, values, false)
    }

    /// [`Self::upsert`] of a row that may have been written before columns were added
    /// (`older_schema`): it then has fewer values, and the added columns read NULL. Replay
    /// after a restart meets such rows: the manifest already holds the newer schema.
    pub(crate) fn upsert_written_before(
        &mut self,
        table: &str,
        lsn: u64,
        now: u64,
        values: RowValues<'_>,
        older_schema: bool,
    ) -> Result<(), ReplicatorError> {
        let mismatch = |reason: String| ReplicatorError::SchemaMismatch {
            table: table.to_string(),
            lsn,
            reason,
        };
        let added =
            |from: usize| older_schema && self.schema.columns[from..].iter().all(|c| c.nullable);
        if values.len() != self.columns.len()
            && !(values.len() < self.columns.len() && added(values.len()))
        {
            return Err(mismatch(format!(
                "row has {} values, the table has {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        // Decode and validate every value first, so that a bad row leaves the builders
        // aligned; then append. Decoded once, into a stack array for tables of up to
        // `STACK_COLUMNS` columns (decoding, UTF-8 checks included, is most of the tail's CPU).
        let mut stack = [ValueRef::Null; STACK_COLUMNS];
        let mut heap = Vec::new();
        let width = self.columns.len();
        let decoded: &mut [ValueRef<'_>] = if width <= STACK_COLUMNS {
            &mut stack[..width]
        } else {
            heap.resize(width, ValueRef::Null);
            &mut heap
        };
        for (i, ((slot, value), column)) in decoded
            .iter_mut()
            .zip(values)
            .zip(&self.schema.columns)
            .enumerate()
        {
            let value = value.map_err(|e| mismatch(e.to_string()))?;
            let fits = match value.data_type() {
                None => column.nullable && i != self.schema.key,
                Some(data_type) => data_type == column.data_type,
            };
            if !fits {
                return Err(mismatch(format!(
                    "value {value:?} does not fit column {:?} ({:?}{})",
                    column.name,
                    column.data_type,
                    if column.nullable { "" } else { ", NOT NULL" }
                )));
            }
            *slot = value;
        }
        for (builder, &value) in self.columns.iter_mut().zip(decoded.iter()) {
            let appended = builder.append(value);
            debug_assert!(appended, "validated above");
        }
        self.lsns.append_value(lsn);
        self.ops.append_value(OP_UPSERT);
        self.note_row(lsn, now);
        Ok(())
    }

    /// Appends a delete: the key, NULL elsewhere.
    pub(crate) fn delete(&mut self, lsn: u64, now: u64, key: i64) {
        let key_index = self.schema.key;
        for (i, builder) in self.columns.iter_mut().enumerate() {
            let value = if i == key_index {
                ValueRef::Int64(key)
            } else {
                ValueRef::Null
            };
            let appended = builder.append(value);
            debug_assert!(appended, "the key is Int64");
        }
        self.lsns.append_value(lsn);
        self.ops.append_value(OP_DELETE);
        self.note_row(lsn, now);
    }

    fn batch(&mut self, cloned: bool) -> Result<RecordBatch, ReplicatorError> {
        let mut arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|c| c.finish(cloned)).collect();
        if cloned {
            arrays.push(Arc::new(self.lsns.finish_cloned()));
            arrays.push(Arc::new(self.ops.finish_cloned()));
        } else {
            arrays.push(Arc::new(self.lsns.finish()));
            arrays.push(Arc::new(self.ops.finish()));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.arrow), arrays)?)
    }

    /// Takes the buffered rows as a batch (in LSN order) and empties the buffer.
    pub(crate) fn seal(&mut self) -> Result<RecordBatch, ReplicatorError> {
        let batch = self.batch(false)?;
        self.rows = 0;
        self.first_lsn = None;
        self.first_arrival = None;
        Ok(batch)
    }

    /// A copy of the buffered rows, leaving them buffered.
    pub(crate) fn snapshot(&mut self) -> Result<RecordBatch, ReplicatorError> {
        self.batch(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{ChangeEncoder, ColumnDef, Entry, RowChange, Value, decode};
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    /// Appends every upsert of a record made of `rows` to `buffer`, returning each one's result.
    fn append(buffer: &mut TableBuffer, rows: &[Vec<Value>], corrupt: Option<&[u8]>) -> Vec<bool> {
        let mut encoder = ChangeEncoder::new();
        for row in rows {
            encoder.upsert("t", row);
        }
        let mut bytes = encoder.finish();
        if let Some(text) = corrupt {
            let at = bytes
                .windows(text.len())
                .position(|w| w == text)
                .expect("text");
            bytes[at] = 0xff;
        }
        let entries = decode(&bytes).expect("decode");
        let Entry::Rows { rows, .. } = &entries[0] else {
            panic!("rows expected")
        };
        rows.clone()
            .enumerate()
            .map(|(i, row)| match row.expect("row") {
                RowChange::Upsert(values) => buffer.upsert("t", i as u64 + 1, 0, values).is_ok(),
                RowChange::Delete(_) => panic!("upserts only"),
            })
            .collect()
    }

    /// Rows wider than the stack array take the heap path and keep every value in place.
    #[test]
    fn wide_rows_keep_every_column() {
        let width = STACK_COLUMNS + 5;
        let schema = TableSchema {
            columns: (0..width)
                .map(|i| ColumnDef::new(format!("c{i}"), DataType::Int64, i != 0))
                .collect(),
            key: 0,
        };
        let mut buffer = TableBuffer::new(schema);
        let rows: Vec<Vec<Value>> = (0..3)
            .map(|r| {
                (0..width)
                    .map(|c| Value::Int64(r * 100 + c as i64))
                    .collect()
            })
            .collect();
        assert_eq!(append(&mut buffer, &rows, None), [true; 3]);
        let batch = buffer.seal().expect("seal");
        for c in 0..width {
            let column = batch.column(c).as_primitive::<Int64Type>();
            let expected: Vec<i64> = (0..3).map(|r| r * 100 + c as i64).collect();
            assert_eq!(column.values().to_vec(), expected, "column {c}");
        }
    }

    /// A row whose text is not UTF-8 (noticed only after earlier values decoded) is refused
    /// whole: the rows around it stay aligned in every column.
    #[test]
    fn a_row_with_bad_text_appends_nothing() {
        let schema = TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("v", DataType::Int64, true),
                ColumnDef::new("name", DataType::Utf8, true),
            ],
            key: 0,
        };
        let mut buffer = TableBuffer::new(schema);
        let row = |id: i64, name: &str| {
            vec![
                Value::Int64(id),
                Value::Int64(-id),
                Value::Utf8(name.into()),
            ]
        };
        let rows = [row(1, "one"), row(2, "\u{1}two"), row(3, "three")];
        assert_eq!(
            append(&mut buffer, &rows, Some(b"\x01two")),
            [true, false, true]
        );
        let batch = buffer.seal().expect("seal");
        assert_eq!(batch.num_rows(), 2);
        let ids = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let values = batch
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let names: Vec<_> = batch
            .column(2)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(
            (ids, values, names),
            (vec![1, 3], vec![-1, -3], vec!["one", "three"])
        );
    }
}
