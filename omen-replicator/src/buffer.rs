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
        let mismatch = |reason: String| ReplicatorError::SchemaMismatch {
            table: table.to_string(),
            lsn,
            reason,
        };
        if values.len() != self.columns.len() {
            return Err(mismatch(format!(
                "row has {} values, the table has {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        // Validate in a first pass (the values decode lazily, without allocating), so that
        // a bad row leaves the builders aligned; then append in a second.
        for (i, (value, column)) in values.clone().zip(&self.schema.columns).enumerate() {
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
        }
        for (builder, value) in self.columns.iter_mut().zip(values) {
            let appended = value.is_ok_and(|value| builder.append(value));
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
