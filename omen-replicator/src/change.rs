//! The row-change format carried in WAL records: the contract between the writer (which
//! encodes a committed batch into one record) and the replicator (which decodes it).
//!
//! ```text
//! record  := 0x01 (version) entry*
//! entry   := 1 create  name column-count column* key-index
//!          | 2 add     name column
//!          | 3 drop    name
//!          | 4 rows    name row-count row*
//!          | 5 part                 (first entry: a part of a transaction group, see below)
//!          | 6 commit  first-lsn(u64)   |   7 abort first-lsn(u64)
//! column  := name type(u8) flags(u8) [max-chars]
//!            flags: bit 0 nullable; bit 1 a max-chars (LEB128) follows (VARCHAR(n), CHAR(n))
//! row     := 1 (upsert) value-count value*   |   2 (delete) key(i64)
//! value   := 0 null | 1 false | 2 true | 3 i32 | 4 i64 | 5 f64 | 6 len utf8-bytes
//!          | 7 timestamp-µs(i64) | 8 date(i32)
//! name    := len bytes (UTF-8);  len, counts: LEB128;  numbers: little-endian
//! ```
//!
//! A transaction too large for one record is written as a **group**: consecutive records
//! that each start with a `part` entry, ended by a record holding only `commit` (or `abort`)
//! naming the group's first LSN. Its rows count only if the group ends in `commit`: readers
//! of the log skip the parts of an aborted or unfinished group ([`crate::group`]). A group is
//! written under the writer's lock, so nothing else comes between its records.
//!
//! Decoding borrows from the record and never panics on bad bytes: it returns
//! [`ChangeError`].

use arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

/// The column types OmenDB stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    /// `BOOLEAN`.
    Boolean,
    /// `INT` (32-bit).
    Int32,
    /// `BIGINT` (64-bit); the primary key's type.
    Int64,
    /// `DOUBLE`.
    Float64,
    /// `TEXT` (UTF-8).
    Utf8,
    /// `TIMESTAMP`, microseconds since the Unix epoch, no time zone.
    TimestampMicros,
    /// `DATE`, days since the Unix epoch.
    Date32,
}

impl DataType {
    /// The Arrow type of a column of this type.
    pub fn to_arrow(self) -> ArrowType {
        match self {
            Self::Boolean => ArrowType::Boolean,
            Self::Int32 => ArrowType::Int32,
            Self::Int64 => ArrowType::Int64,
            Self::Float64 => ArrowType::Float64,
            Self::Utf8 => ArrowType::Utf8,
            Self::TimestampMicros => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            Self::Date32 => ArrowType::Date32,
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<Self> {
        [
            Self::Boolean,
            Self::Int32,
            Self::Int64,
            Self::Float64,
            Self::Utf8,
            Self::TimestampMicros,
            Self::Date32,
        ]
        .get(usize::from(code).checked_sub(1)?)
        .copied()
    }
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
    /// Whether it accepts NULL.
    pub nullable: bool,
    /// The most characters a `TEXT` value may have (`VARCHAR(n)`, `CHAR(n)`); `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u32>,
    /// A `SMALLINT` column: an `INT` column whose values are within `i16`'s range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub small_int: bool,
}

impl ColumnDef {
    /// A column.
    pub fn new(name: impl Into<String>, data_type: DataType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            data_type,
            nullable,
            max_chars: None,
            small_int: false,
        }
    }

    /// The column as a `SMALLINT` (an `INT` column) when `small_int`.
    pub fn with_small_int(mut self, small_int: bool) -> Self {
        self.small_int = small_int && self.data_type == DataType::Int32;
        self
    }

    /// The column with at most `max_chars` characters per value (a `TEXT` column).
    pub fn with_max_chars(mut self, max_chars: Option<u32>) -> Self {
        self.max_chars = max_chars;
        self
    }
}

/// Most columns a table may have.
pub const MAX_COLUMNS: usize = u16::MAX as usize;

/// A table's columns and which one is the primary key (a non-null `Int64`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The columns, in order.
    pub columns: Vec<ColumnDef>,
    /// Index of the primary-key column.
    pub key: usize,
}

/// Name of the hidden column holding each row version's commit LSN.
pub const LSN_COLUMN: &str = "_lsn";
/// Name of the hidden column holding each row version's operation ([`OP_UPSERT`] or
/// [`OP_DELETE`]).
pub const OP_COLUMN: &str = "_op";
/// `_op` of an inserted or updated row.
pub const OP_UPSERT: u8 = 1;
/// `_op` of a deleted row (its other columns are NULL but the key).
pub const OP_DELETE: u8 = 2;

impl TableSchema {
    /// Checks that the key is a non-null `Int64` column and names are unique and not hidden.
    pub fn validate(&self) -> Result<(), String> {
        if self.columns.len() > MAX_COLUMNS {
            return Err(format!(
                "a table has at most {MAX_COLUMNS} columns, this schema has {}",
                self.columns.len()
            ));
        }
        let key = self
            .columns
            .get(self.key)
            .ok_or_else(|| format!("key column index {} is out of range", self.key))?;
        if key.data_type != DataType::Int64 || key.nullable {
            return Err(format!(
                "primary key column {:?} must be a non-null BIGINT (Int64)",
                key.name
            ));
        }
        for (i, column) in self.columns.iter().enumerate() {
            if column.name.starts_with('_')
                && (column.name == LSN_COLUMN || column.name == OP_COLUMN)
            {
                return Err(format!("column name {:?} is reserved", column.name));
            }
            if self.columns[..i].iter().any(|c| c.name == column.name) {
                return Err(format!("column {:?} appears twice", column.name));
            }
        }
        Ok(())
    }

    /// The Arrow schema of the table's stored form: its columns (all nullable, since deletes
    /// carry only the key), then `_lsn` and `_op`.
    pub fn stored_arrow_schema(&self) -> Schema {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(&c.name, c.data_type.to_arrow(), i != self.key))
            .collect();
        fields.push(Field::new(LSN_COLUMN, ArrowType::UInt64, false));
        fields.push(Field::new(OP_COLUMN, ArrowType::UInt8, false));
        Schema::new(fields)
    }

    /// The Arrow schema users see: the columns with their declared nullability.
    pub fn arrow_schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.to_arrow(), c.nullable))
                .collect::<Vec<_>>(),
        )
    }
}

/// An owned value, for encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 32-bit integer.
    Int32(i32),
    /// A 64-bit integer.
    Int64(i64),
    /// A double.
    Float64(f64),
    /// Text.
    Utf8(String),
    /// Microseconds since the epoch.
    TimestampMicros(i64),
    /// Days since the epoch.
    Date32(i32),
}

/// A decoded value, borrowing text from the record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// NULL.
    Null,
    /// A boolean.
    Boolean(bool),
    /// A 32-bit integer.
    Int32(i32),
    /// A 64-bit integer.
    Int64(i64),
    /// A double.
    Float64(f64),
    /// Text.
    Utf8(&'a str),
    /// Microseconds since the epoch.
    TimestampMicros(i64),
    /// Days since the epoch.
    Date32(i32),
}

impl Value {
    /// The borrowed form.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Self::Null => ValueRef::Null,
            Self::Boolean(v) => ValueRef::Boolean(*v),
            Self::Int32(v) => ValueRef::Int32(*v),
            Self::Int64(v) => ValueRef::Int64(*v),
            Self::Float64(v) => ValueRef::Float64(*v),
            Self::Utf8(v) => ValueRef::Utf8(v),
            Self::TimestampMicros(v) => ValueRef::TimestampMicros(*v),
            Self::Date32(v) => ValueRef::Date32(*v),
        }
    }
}

impl ValueRef<'_> {
    /// The column type this value belongs to; `None` for NULL, which fits any nullable column.
    pub fn data_type(self) -> Option<DataType> {
        Some(match self {
            Self::Null => return None,
            Self::Boolean(_) => DataType::Boolean,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Float64(_) => DataType::Float64,
            Self::Utf8(_) => DataType::Utf8,
            Self::TimestampMicros(_) => DataType::TimestampMicros,
            Self::Date32(_) => DataType::Date32,
        })
    }

    /// The owned form.
    pub fn to_owned(self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Boolean(v) => Value::Boolean(v),
            Self::Int32(v) => Value::Int32(v),
            Self::Int64(v) => Value::Int64(v),
            Self::Float64(v) => Value::Float64(v),
            Self::Utf8(v) => Value::Utf8(v.to_string()),
            Self::TimestampMicros(v) => Value::TimestampMicros(v),
            Self::Date32(v) => Value::Date32(v),
        }
    }
}

/// Bytes that are not a valid change record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid change record at byte {offset}: {reason}")]
pub struct ChangeError {
    /// Where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

const VERSION: u8 = 1;
const CREATE: u8 = 1;
const ADD: u8 = 2;
const DROP: u8 = 3;
const ROWS: u8 = 4;
const PART: u8 = 5;
const COMMIT: u8 = 6;
const ABORT: u8 = 7;

/// What a record is to a transaction group (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupMarker {
    /// A part: its rows count if the group commits.
    Part,
    /// The end of the group that began at this LSN: its parts count.
    Commit(u64),
    /// The end of the group that began at this LSN: its parts do not count.
    Abort(u64),
}

/// The group marker `record` starts with, if any (without decoding the rest).
pub fn group_marker(record: &[u8]) -> Option<GroupMarker> {
    let lsn = || Some(u64::from_le_bytes(record.get(2..10)?.try_into().ok()?));
    match (record.first(), record.get(1)) {
        (Some(&VERSION), Some(&PART)) => Some(GroupMarker::Part),
        (Some(&VERSION), Some(&COMMIT)) => lsn().map(GroupMarker::Commit),
        (Some(&VERSION), Some(&ABORT)) => lsn().map(GroupMarker::Abort),
        _ => None,
    }
}

/// A record that ends the group whose first record has `first` (`commit` or not).
pub fn group_end(first: u64, commit: bool) -> Vec<u8> {
    let mut buf = vec![VERSION, if commit { COMMIT } else { ABORT }];
    buf.extend_from_slice(&first.to_le_bytes());
    buf
}

/// Builds one change record. Consecutive row changes of one table share an entry.
#[derive(Debug)]
pub struct ChangeEncoder {
    buf: Vec<u8>,
    /// Start of the open rows entry's count, its table, and its row count.
    open_rows: Option<(usize, String, u64)>,
}

impl Default for ChangeEncoder {
    fn default() -> Self {
        Self::new()
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_column(buf: &mut Vec<u8>, column: &ColumnDef) {
    put_str(buf, &column.name);
    buf.push(column.data_type.code());
    buf.push(
        u8::from(column.nullable)
            | if column.max_chars.is_some() { 2 } else { 0 }
            | if column.small_int { 4 } else { 0 },
    );
    if let Some(max) = column.max_chars {
        put_varint(buf, u64::from(max));
    }
}

/// Appends one value in the record's encoding: a tag byte, then its payload (little-endian
/// numbers; text as a LEB128 length and its bytes). [`values_of`] reads such bytes back.
pub fn encode_value(buf: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => buf.push(0),
        ValueRef::Boolean(v) => buf.push(1 + u8::from(v)),
        ValueRef::Int32(v) => {
            buf.push(3);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        ValueRef::Int64(v) => {
            buf.push(4);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        ValueRef::Float64(v) => {
            buf.push(5);
            // One NaN: Arrow orders and groups NaNs by their bits (a NaN with its sign bit
            // set sorted below -Infinity); PostgreSQL has one NaN, above every number.
            let v = if v.is_nan() { f64::NAN } else { v };
            buf.extend_from_slice(&v.to_le_bytes());
        }
        ValueRef::Utf8(v) => {
            buf.push(6);
            put_str(buf, v);
        }
        ValueRef::TimestampMicros(v) => {
            buf.push(7);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        ValueRef::Date32(v) => {
            buf.push(8);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// The `count` values encoded in `bytes` by [`encode_value`], decoded lazily as a row's are.
pub fn values_of(bytes: &[u8], count: usize) -> RowValues<'_> {
    RowValues {
        cursor: Cursor { bytes, pos: 0 },
        remaining: count as u64,
    }
}

/// Row counts are patched in place at a fixed width, so they use 5 LEB128 bytes.
const COUNT_WIDTH: usize = 5;

impl ChangeEncoder {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            buf: vec![VERSION],
            open_rows: None,
        }
    }

    /// An empty record that is a part of a transaction group (see the module docs).
    pub fn part() -> Self {
        Self {
            buf: vec![VERSION, PART],
            open_rows: None,
        }
    }

    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    fn close_rows(&mut self) {
        if let Some((at, _, count)) = self.open_rows.take() {
            let mut v = count;
            for i in 0..COUNT_WIDTH {
                let more = if i + 1 < COUNT_WIDTH { 0x80 } else { 0 };
                self.buf[at + i] = (v & 0x7f) as u8 | more;
                v >>= 7;
            }
        }
    }

    fn rows_of(&mut self, table: &str) {
        if matches!(&self.open_rows, Some((_, t, _)) if t == table) {
            return;
        }
        self.close_rows();
        self.buf.push(ROWS);
        put_str(&mut self.buf, table);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; COUNT_WIDTH]);
        self.open_rows = Some((at, table.to_string(), 0));
    }

    fn count_row(&mut self) {
        if let Some((_, _, count)) = &mut self.open_rows {
            *count += 1;
        }
    }

    /// `CREATE TABLE`.
    pub fn create_table(&mut self, table: &str, schema: &TableSchema) {
        self.close_rows();
        self.buf.push(CREATE);
        put_str(&mut self.buf, table);
        put_varint(&mut self.buf, schema.columns.len() as u64);
        for column in &schema.columns {
            put_column(&mut self.buf, column);
        }
        put_varint(&mut self.buf, schema.key as u64);
    }

    /// `ALTER TABLE ... ADD COLUMN`.
    pub fn add_column(&mut self, table: &str, column: &ColumnDef) {
        self.close_rows();
        self.buf.push(ADD);
        put_str(&mut self.buf, table);
        put_column(&mut self.buf, column);
    }

    /// `DROP TABLE`.
    pub fn drop_table(&mut self, table: &str) {
        self.close_rows();
        self.buf.push(DROP);
        put_str(&mut self.buf, table);
    }

    /// An insert or update of a whole row (values in column order).
    pub fn upsert(&mut self, table: &str, row: &[Value]) {
        self.rows_of(table);
        self.buf.push(OP_UPSERT);
        put_varint(&mut self.buf, row.len() as u64);
        for value in row {
            self.put_value(value);
        }
        self.count_row();
    }

    /// A delete by key.
    pub fn delete(&mut self, table: &str, key: i64) {
        self.rows_of(table);
        self.buf.push(OP_DELETE);
        self.buf.extend_from_slice(&key.to_le_bytes());
        self.count_row();
    }

    fn put_value(&mut self, value: &Value) {
        encode_value(&mut self.buf, value.as_ref());
    }

    /// Whether no change was added.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 1 || self.buf[..] == [VERSION, PART]
    }

    /// The encoded record.
    pub fn finish(mut self) -> Vec<u8> {
        self.close_rows();
        self.buf
    }
}

/// A cursor over record bytes.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, ChangeError> {
        Err(ChangeError {
            offset: self.pos,
            reason,
        })
    }

    fn u8(&mut self) -> Result<u8, ChangeError> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return self.fail("record ends early");
        };
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ChangeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return self.fail("record ends early");
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ChangeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, ChangeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint too long")
    }

    fn len(&mut self) -> Result<usize, ChangeError> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.bytes.len() - self.pos.min(self.bytes.len()) => Ok(n),
            _ => self.fail("length beyond the record"),
        }
    }

    fn str(&mut self) -> Result<&'a str, ChangeError> {
        let n = self.len()?;
        let start = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| ChangeError {
            offset: start,
            reason: "text is not UTF-8",
        })
    }

    fn column(&mut self) -> Result<ColumnDef, ChangeError> {
        let name = self.str()?.to_string();
        let Some(data_type) = DataType::from_code(self.u8()?) else {
            return self.fail("unknown column type");
        };
        let flags = self.u8()?;
        if flags > 7 || (flags & 4 != 0 && data_type != DataType::Int32) {
            return self.fail("bad column flags");
        }
        let max_chars = if flags & 2 == 0 {
            None
        } else {
            match u32::try_from(self.varint()?) {
                Ok(max) if max > 0 && data_type == DataType::Utf8 => Some(max),
                _ => return self.fail("bad column length"),
            }
        };
        Ok(ColumnDef {
            name,
            data_type,
            nullable: flags & 1 == 1,
            max_chars,
            small_int: flags & 4 != 0,
        })
    }

    /// Moves past one value, checking its tag and length but not its contents.
    fn skip_value(&mut self) -> Result<(), ChangeError> {
        let width = match self.u8()? {
            0..=2 => 0,
            3 | 8 => 4,
            4 | 5 | 7 => 8,
            6 => self.len()?,
            _ => return self.fail("unknown value tag"),
        };
        self.take(width).map(|_| ())
    }

    pub(crate) fn value(&mut self) -> Result<ValueRef<'a>, ChangeError> {
        Ok(match self.u8()? {
            0 => ValueRef::Null,
            1 => ValueRef::Boolean(false),
            2 => ValueRef::Boolean(true),
            3 => ValueRef::Int32(i32::from_le_bytes(self.array()?)),
            4 => ValueRef::Int64(i64::from_le_bytes(self.array()?)),
            5 => ValueRef::Float64(f64::from_le_bytes(self.array()?)),
            6 => ValueRef::Utf8(self.str()?),
            7 => ValueRef::TimestampMicros(i64::from_le_bytes(self.array()?)),
            8 => ValueRef::Date32(i32::from_le_bytes(self.array()?)),
            _ => return self.fail("unknown value tag"),
        })
    }
}

/// One entry of a decoded record.
#[derive(Clone, Debug)]
pub enum Entry<'a> {
    /// `CREATE TABLE`.
    CreateTable {
        /// The table.
        table: &'a str,
        /// Its schema.
        schema: TableSchema,
    },
    /// `ADD COLUMN`.
    AddColumn {
        /// The table.
        table: &'a str,
        /// The new column.
        column: ColumnDef,
    },
    /// `DROP TABLE`.
    DropTable {
        /// The table.
        table: &'a str,
    },
    /// The record is a part of a transaction group (see the module docs).
    Part,
    /// Ends the group whose first record is at this LSN; its parts count.
    Commit(u64),
    /// Ends the group whose first record is at this LSN; its parts do not count.
    Abort(u64),
    /// Row changes of one table.
    Rows {
        /// The table.
        table: &'a str,
        /// The rows, decoded lazily.
        rows: Rows<'a>,
    },
}

/// The rows of an entry; iterate to decode them.
#[derive(Clone, Debug)]
pub struct Rows<'a> {
    cursor: Cursor<'a>,
    remaining: u64,
}

/// One row change.
#[derive(Clone, Debug)]
pub enum RowChange<'a> {
    /// An insert or update; iterate the values.
    Upsert(RowValues<'a>),
    /// A delete by key.
    Delete(i64),
}

/// The values of an upserted row, decoded lazily.
#[derive(Clone, Debug)]
pub struct RowValues<'a> {
    cursor: Cursor<'a>,
    remaining: u64,
}

impl RowValues<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for RowValues<'a> {
    type Item = Result<ValueRef<'a>, ChangeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.cursor.value())
    }
}

impl<'a> Rows<'a> {
    /// Number of rows.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Result<RowChange<'a>, ChangeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let row = (|| match self.cursor.u8()? {
            OP_UPSERT => {
                let count = self.cursor.varint()?;
                let values = RowValues {
                    cursor: self.cursor.clone(),
                    remaining: count,
                };
                // Skip the values to reach the next row: their structure only (tags and
                // lengths). Text is checked for UTF-8 once, when the values are read.
                for _ in 0..count {
                    self.cursor.skip_value()?;
                }
                Ok(RowChange::Upsert(values))
            }
            OP_DELETE => Ok(RowChange::Delete(i64::from_le_bytes(self.cursor.array()?))),
            _ => self.cursor.fail("unknown row operation"),
        })();
        if row.is_err() {
            self.remaining = 0;
        }
        Some(row)
    }
}

/// Decodes a record into its entries (rows are decoded when iterated).
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ChangeError> {
    let mut cursor = Cursor { bytes, pos: 0 };
    if cursor.u8()? != VERSION {
        return cursor.fail("unknown change record version");
    }
    let mut entries = Vec::new();
    while cursor.pos < bytes.len() {
        let entry = match cursor.u8()? {
            CREATE => {
                let table = cursor.str()?;
                let count = cursor.len()?;
                let columns = (0..count)
                    .map(|_| cursor.column())
                    .collect::<Result<Vec<_>, _>>()?;
                let key = cursor.varint()? as usize;
                Entry::CreateTable {
                    table,
                    schema: TableSchema { columns, key },
                }
            }
            ADD => Entry::AddColumn {
                table: cursor.str()?,
                column: cursor.column()?,
            },
            DROP => Entry::DropTable {
                table: cursor.str()?,
            },
            ROWS => {
                let table = cursor.str()?;
                let count = cursor.varint()?;
                let rows = Rows {
                    cursor: cursor.clone(),
                    remaining: count,
                };
                // Walk the rows once to find the next entry (and validate them).
                let mut walk = rows.clone();
                for row in walk.by_ref() {
                    row?;
                }
                cursor = walk.cursor;
                Entry::Rows { table, rows }
            }
            PART => Entry::Part,
            COMMIT => Entry::Commit(u64::from_le_bytes(cursor.array()?)),
            ABORT => Entry::Abort(u64::from_le_bytes(cursor.array()?)),
            _ => return cursor.fail("unknown entry kind"),
        };
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("name", DataType::Utf8, true),
                ColumnDef::new("score", DataType::Float64, true),
            ],
            key: 0,
        }
    }

    #[test]
    fn records_round_trip() {
        let mut encoder = ChangeEncoder::new();
        encoder.create_table("t", &schema());
        encoder.upsert(
            "t",
            &[Value::Int64(1), Value::Utf8("a".into()), Value::Null],
        );
        encoder.upsert("t", &[Value::Int64(2), Value::Null, Value::Float64(2.5)]);
        encoder.delete("t", 1);
        encoder.upsert("u", &[Value::Int64(9)]);
        let bytes = encoder.finish();
        let entries = decode(&bytes).expect("decode");
        assert_eq!(entries.len(), 3);
        let Entry::Rows { table, rows } = &entries[1] else {
            panic!("rows expected")
        };
        assert_eq!((*table, rows.len()), ("t", 3));
        let rows: Vec<_> = rows.clone().map(|r| r.expect("row")).collect();
        let RowChange::Upsert(values) = &rows[0] else {
            panic!("upsert expected")
        };
        let values: Vec<_> = values.clone().map(|v| v.expect("value")).collect();
        assert_eq!(
            values,
            [ValueRef::Int64(1), ValueRef::Utf8("a"), ValueRef::Null]
        );
        assert!(matches!(rows[2], RowChange::Delete(1)));
    }

    /// A column's length (VARCHAR(n)) survives the log, and a record written before lengths
    /// existed (flags 0/1) still reads as columns without one.
    #[test]
    fn column_lengths_round_trip() {
        let mut with_length = schema();
        with_length.columns[1] =
            ColumnDef::new("name", DataType::Utf8, true).with_max_chars(Some(3));
        with_length
            .columns
            .push(ColumnDef::new("small", DataType::Int32, true).with_small_int(true));
        let mut encoder = ChangeEncoder::new();
        encoder.create_table("t", &with_length);
        encoder.create_table("u", &schema());
        let bytes = encoder.finish();
        let entries = decode(&bytes).expect("decode");
        let schemas: Vec<&TableSchema> = entries
            .iter()
            .map(|e| match e {
                Entry::CreateTable { schema, .. } => schema,
                _ => panic!("create expected"),
            })
            .collect();
        assert_eq!(schemas, [&with_length, &schema()]);
        let json = serde_json::to_string(&schema()).expect("json");
        assert!(!json.contains("max_chars"), "{json}");
        assert!(!json.contains("small_int"), "{json}");
        let back: TableSchema = serde_json::from_str(&json).expect("json back");
        assert_eq!(back, schema());
    }

    /// Every NaN is stored as the one quiet NaN, so that readers order and group them as one.
    #[test]
    fn nans_are_stored_as_one() {
        let mut encoder = ChangeEncoder::new();
        encoder.upsert("t", &[Value::Int64(1), Value::Float64(-f64::NAN)]);
        let bytes = encoder.finish();
        let entries = decode(&bytes).expect("decode");
        let Entry::Rows { rows, .. } = &entries[0] else {
            panic!("rows expected")
        };
        let rows: Vec<_> = rows.clone().map(|r| r.expect("row")).collect();
        let RowChange::Upsert(values) = &rows[0] else {
            panic!("upsert expected")
        };
        let values: Vec<_> = values.clone().map(|v| v.expect("value")).collect();
        let ValueRef::Float64(stored) = values[1] else {
            panic!("a double expected")
        };
        assert_eq!(stored.to_bits(), f64::NAN.to_bits());
    }

    /// Rows are skipped by structure; text that is not UTF-8 is reported when its value is
    /// read, and the rows after it still decode.
    #[test]
    fn text_that_is_not_utf8_is_an_error_when_read() {
        let mut encoder = ChangeEncoder::new();
        encoder.upsert(
            "t",
            &[Value::Int64(1), Value::Utf8("\u{1}bad".into()), Value::Null],
        );
        encoder.upsert(
            "t",
            &[Value::Int64(2), Value::Utf8("ok".into()), Value::Null],
        );
        let mut bytes = encoder.finish();
        let at = bytes
            .windows(4)
            .position(|w| w == b"\x01bad")
            .expect("text in the record");
        bytes[at] = 0xff;
        let entries = decode(&bytes).expect("decode");
        let Entry::Rows { rows, .. } = &entries[0] else {
            panic!("rows expected")
        };
        let rows: Vec<_> = rows.clone().map(|r| r.expect("row structure")).collect();
        let [RowChange::Upsert(bad), RowChange::Upsert(good)] = &rows[..] else {
            panic!("two upserts expected")
        };
        let error = bad.clone().find_map(Result::err).expect("a UTF-8 error");
        assert_eq!((error.reason, error.offset), ("text is not UTF-8", at));
        let good: Vec<_> = good.clone().map(|v| v.expect("value")).collect();
        assert_eq!(good[1], ValueRef::Utf8("ok"));
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let mut encoder = ChangeEncoder::new();
        encoder.create_table("t", &schema());
        encoder.upsert(
            "t",
            &[
                Value::Int64(1),
                Value::Utf8("abc".into()),
                Value::Float64(1.0),
            ],
        );
        let bytes = encoder.finish();
        for cut in 0..bytes.len() {
            // A cut between entries decodes to fewer entries; anywhere else it is an error.
            match decode(&bytes[..cut]) {
                Ok(entries) => assert!(entries.len() < 2, "cut at {cut} decoded everything"),
                Err(error) => assert!(error.offset <= cut, "{error}"),
            }
        }
    }
}
