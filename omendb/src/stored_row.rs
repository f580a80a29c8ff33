//! Rows as a table's learned index stores them: encoded, in the index's value slot.
//!
//! Why: with each row in an allocation of its own (`Arc<[Value]>`), a point read followed a
//! pointer from the value slot to the row: a third dependent cache miss after the data node's
//! header and the key slot, and a reference-count write (a locked instruction, which keeps
//! the CPU from overlapping the next read's misses with it) on the returned clone. A
//! [`StoredRow`] keeps the row's values in the slot itself when they fit in [`INLINE`] bytes,
//! so that `get` decodes the row from the cache line the lookup has already brought in. Wider
//! rows keep their bytes in a boxed slice: one more miss, as before. Memory falls too: the
//! benchmark's rows (five columns) take a 48-byte slot instead of a 16-byte pointer to about
//! 200 bytes of `Arc<[Value]>` plus an allocation for the text.
//!
//! Invariants:
//! - The bytes are the values of every column but the key, in column order, in the encoding
//!   of `omen_replicator::change` (`encode_value`): the key is the index's own key.
//! - They were decoded once (UTF-8 checked) before they were stored, so decoding them again
//!   fails only if memory was corrupted; [`StoredRow::decode`] still reports it as an error.

use omen_replicator::change::{ChangeError, RowValues, ValueRef, encode_value, values_of};

use crate::row::Row;

/// Bytes of encoded values a row keeps inline (a slot is then 48 bytes).
pub(crate) const INLINE: usize = 46;

/// A row's values but its key, encoded (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoredRow {
    /// `bytes[..len]` hold the values.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Values too wide for the slot.
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<StoredRow>() == 48);

/// What a row in the log was, for [`StoredRow::encode`].
pub(crate) enum Encoded {
    /// The row, stored, and its key.
    Row(i64, StoredRow),
    /// The value at the key's position is not a BIGINT.
    NoKey,
}

impl StoredRow {
    /// Encodes a row's values, all but the key at `key_index`, into `scratch` (reused between
    /// rows) and then into a stored row. Decoding the values checks them (UTF-8 included).
    pub(crate) fn encode(
        values: RowValues<'_>,
        key_index: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Encoded, ChangeError> {
        scratch.clear();
        let mut key = None;
        for (i, value) in values.enumerate() {
            match (i == key_index, value?) {
                (true, ValueRef::Int64(k)) => key = Some(k),
                (true, _) => return Ok(Encoded::NoKey),
                (false, value) => encode_value(scratch, value),
            }
        }
        Ok(match key {
            Some(key) => Encoded::Row(key, Self::from_bytes(scratch)),
            None => Encoded::NoKey,
        })
    }

    fn from_bytes(encoded: &[u8]) -> Self {
        match u8::try_from(encoded.len()) {
            Ok(len) if encoded.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..encoded.len()].copy_from_slice(encoded);
                StoredRow::Inline { len, bytes }
            }
            _ => StoredRow::Heap(encoded.into()),
        }
    }

    /// The encoded values.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            StoredRow::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredRow::Heap(bytes) => bytes,
        }
    }

    /// The values of the row with `key` in column order: `columns` of them, the key at
    /// `key_index`, the stored ones around it, each decoded when the iterator reaches it.
    #[inline]
    pub(crate) fn values(&self, key: i64, key_index: usize, columns: usize) -> StoredValues<'_> {
        StoredValues {
            key,
            key_index,
            column: 0,
            columns,
            stored: values_of(self.bytes(), columns.saturating_sub(1)),
        }
    }

    /// The row with `key`: its `columns` values, the key at `key_index`.
    #[inline]
    pub(crate) fn decode(
        &self,
        key: i64,
        key_index: usize,
        columns: usize,
    ) -> Result<Row, ChangeError> {
        let mut row = Vec::with_capacity(columns);
        for value in self.values(key, key_index, columns) {
            row.push(value?.to_owned());
        }
        Ok(row.into_boxed_slice())
    }

    /// The row with a NULL appended (`ADD COLUMN`).
    pub(crate) fn with_null(&self) -> Self {
        let mut bytes = self.bytes().to_vec();
        encode_value(&mut bytes, ValueRef::Null);
        Self::from_bytes(&bytes)
    }
}

/// The values of a stored row in column order (see [`StoredRow::values`]).
#[derive(Clone, Debug)]
pub(crate) struct StoredValues<'a> {
    key: i64,
    key_index: usize,
    column: usize,
    columns: usize,
    stored: RowValues<'a>,
}

impl<'a> Iterator for StoredValues<'a> {
    type Item = Result<ValueRef<'a>, ChangeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.column >= self.columns {
            return None;
        }
        let column = self.column;
        self.column += 1;
        if column == self.key_index {
            return Some(Ok(ValueRef::Int64(self.key)));
        }
        // Fewer values than columns cannot happen (`ADD COLUMN` widens every row); were it
        // to, the missing ones read as NULL, as a column added later would.
        Some(self.stored.next().unwrap_or(Ok(ValueRef::Null)))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.columns - self.column;
        (left, Some(left))
    }
}

impl ExactSizeIterator for StoredValues<'_> {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use omen_replicator::change::{ChangeEncoder, Entry, RowChange, Value, decode};

    /// Encodes `row` as a WAL record would, then encodes it for the index.
    fn encode(row: &[Value], key_index: usize) -> Encoded {
        let mut encoder = ChangeEncoder::new();
        encoder.upsert("t", row);
        let bytes = encoder.finish();
        let entries = decode(&bytes).expect("decode");
        let Entry::Rows { rows, .. } = &entries[0] else {
            panic!("rows expected")
        };
        let Some(Ok(RowChange::Upsert(values))) = rows.clone().next() else {
            panic!("an upsert expected")
        };
        StoredRow::encode(values, key_index, &mut Vec::new()).expect("encode")
    }

    /// [`encode`], for a row with a BIGINT key.
    pub(crate) fn store(row: &[Value], key_index: usize) -> (i64, StoredRow) {
        match encode(row, key_index) {
            Encoded::Row(key, stored) => (key, stored),
            Encoded::NoKey => panic!("no key"),
        }
    }

    #[test]
    fn rows_round_trip_inline_and_on_the_heap() {
        let narrow = vec![
            Value::Utf8("sku-1a2b".into()),
            Value::Int64(42),
            Value::Float64(12.5),
            Value::Null,
            Value::TimestampMicros(-7),
        ];
        let (key, stored) = store(&narrow, 1);
        assert_eq!(key, 42);
        assert!(matches!(stored, StoredRow::Inline { .. }), "{stored:?}");
        assert_eq!(&*stored.decode(key, 1, 5).expect("decode"), &narrow[..]);

        let wide = vec![
            Value::Int64(-3),
            Value::Utf8("x".repeat(200)),
            Value::Boolean(true),
            Value::Date32(19_000),
            Value::Int32(-1),
        ];
        let (key, stored) = store(&wide, 0);
        assert!(matches!(stored, StoredRow::Heap(_)), "{stored:?}");
        assert_eq!(&*stored.decode(key, 0, 5).expect("decode"), &wide[..]);

        let mut grown = wide.clone();
        grown.push(Value::Null);
        assert_eq!(
            &*stored.with_null().decode(key, 0, 6).expect("decode"),
            &grown[..]
        );
    }

    /// Exactly `INLINE` bytes stay inline; one more goes to the heap.
    #[test]
    fn the_inline_boundary() {
        // A key, then text whose encoding (tag, length, bytes) takes `n + 2` bytes.
        for (n, inline) in [(INLINE - 2, true), (INLINE - 1, false)] {
            let row = vec![Value::Int64(1), Value::Utf8("y".repeat(n))];
            let (key, stored) = store(&row, 0);
            assert_eq!(stored.bytes().len(), n + 2);
            assert_eq!(matches!(stored, StoredRow::Inline { .. }), inline, "{n}");
            assert_eq!(&*stored.decode(key, 0, 2).expect("decode"), &row[..]);
        }
    }

    #[test]
    fn a_key_that_is_not_a_bigint_is_refused() {
        let row = [Value::Utf8("k".into()), Value::Int64(1)];
        assert!(matches!(encode(&row, 0), Encoded::NoKey));
    }

    /// Damaged bytes are an error, not a panic.
    #[test]
    fn damaged_bytes_are_an_error() {
        let stored = StoredRow::Heap(vec![6, 40, b'a'].into());
        assert!(stored.decode(1, 0, 2).is_err());
    }
}
