//! The RocksDB baseline of the `Db` benchmark: the same `orders` rows under 8-byte big-endian
//! keys, values in a simple row encoding, bulk loaded through an SST file and read through a
//! block cache that holds every block, with bloom filters and a hash index in the data blocks.
//! A read decodes the value back into a row of [`Value`]s, as `Db::get` returns one.

use std::path::{Path, PathBuf};

use omen_replicator::change::Value;
use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, DataBlockIndexType, IngestExternalFileOptions,
    Options, SstFileWriter,
};

use crate::replicator_workload as workload;

/// Block size of the tables (RocksDB's default).
pub const BLOCK_BYTES: usize = 4096;
/// Bits per key of the bloom filters.
pub const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// The row encoding of the values: `qty` i64, `price` f64, `at` i64 (little-endian, 8 bytes
/// each), then the `sku` bytes to the end. The key is not repeated.
pub fn encode_row(row: &[Value]) -> Vec<u8> {
    let int = |i: usize| match row.get(i) {
        Some(Value::Int64(v) | Value::TimestampMicros(v)) => *v,
        _ => 0,
    };
    let price = match row.get(2) {
        Some(Value::Float64(v)) => *v,
        _ => 0.0,
    };
    let sku = match row.get(3) {
        Some(Value::Utf8(s)) => s.as_bytes(),
        _ => &[],
    };
    let mut bytes = Vec::with_capacity(24 + sku.len());
    bytes.extend_from_slice(&int(1).to_le_bytes());
    bytes.extend_from_slice(&price.to_le_bytes());
    bytes.extend_from_slice(&int(4).to_le_bytes());
    bytes.extend_from_slice(sku);
    bytes
}

/// The row of `key` from its encoded values, or `None` if they are malformed.
pub fn decode_row(key: i64, bytes: &[u8]) -> Option<Vec<Value>> {
    let word = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    let sku = std::str::from_utf8(bytes.get(24..)?).ok()?;
    Some(vec![
        Value::Int64(key),
        Value::Int64(i64::from_le_bytes(word(0)?)),
        Value::Float64(f64::from_le_bytes(word(8)?)),
        Value::Utf8(sku.to_string()),
        Value::TimestampMicros(i64::from_le_bytes(word(16)?)),
    ])
}

/// RocksDB holding the rows of some keys, in a scratch directory deleted on drop.
pub struct RocksRows {
    db: DB,
    cache: Cache,
    dir: PathBuf,
}

fn options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_block_size(BLOCK_BYTES);
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    // A hash index inside each data block: point lookups skip the binary search there.
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    // Index and filter blocks stay in the table reader (always in memory) rather than
    // competing with data blocks in cache shards.
    table.set_cache_index_and_filter_blocks(false);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    // The crate is built without compression libraries; the cache holds blocks uncompressed
    // either way.
    options.set_compression_type(DBCompressionType::None);
    options
}

impl RocksRows {
    /// Creates the database in `dir` (emptied first) holding `workload::row(k)` for each of
    /// the sorted `keys`, with a block cache of `cache_bytes`.
    pub fn load(
        dir: &Path,
        keys: &[i64],
        cache_bytes: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Self, rocksdb::Error> {
        let _ = std::fs::remove_dir_all(dir);
        let cache = Cache::new_lru_cache(cache_bytes);
        // `DB::open` with the options (not `open_cf` with default column-family options).
        let options = options(&cache);
        let db = DB::open(&options, dir)?;
        let sst = dir.join("bulk.sst");
        let mut writer = SstFileWriter::create(&options);
        writer.open(&sst)?;
        for (i, &key) in keys.iter().enumerate() {
            writer.put(key_bytes(key), encode_row(&workload::row(key)))?;
            if i % 65_536 == 65_535 {
                progress(65_536);
            }
        }
        writer.finish()?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        db.ingest_external_file_opts(&ingest, vec![sst])?;
        Ok(Self {
            db,
            cache,
            dir: dir.to_path_buf(),
        })
    }

    /// Reads every row once so that all data blocks sit in the cache; returns the count.
    pub fn warm(&self) -> u64 {
        crate::rocks::read_all(&self.db)
    }

    /// The row of `key`, decoded.
    #[inline]
    pub fn get(&self, key: i64) -> Result<Option<Vec<Value>>, rocksdb::Error> {
        Ok(self
            .db
            .get_pinned(key_bytes(key))?
            .and_then(|value| decode_row(key, &value)))
    }

    /// The `qty` of `key`'s row, read from the pinned value without decoding the row.
    #[inline]
    pub fn qty(&self, key: i64) -> Result<Option<i64>, rocksdb::Error> {
        Ok(self.db.get_pinned(key_bytes(key))?.and_then(|value| {
            let word: [u8; 8] = value.get(..8)?.try_into().ok()?;
            Some(i64::from_le_bytes(word))
        }))
    }

    /// Bytes in the block cache now.
    pub fn cache_usage_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes of the table files.
    pub fn sst_bytes(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.total-sst-files-size")
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// Keys are non-negative, so their big-endian bytes sort as the numbers do.
fn key_bytes(key: i64) -> [u8; 8] {
    key.to_be_bytes()
}

impl Drop for RocksRows {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_encoding() {
        for key in [0, 1, 17, 1 << 39] {
            let row = workload::row(key);
            assert_eq!(decode_row(key, &encode_row(&row)), Some(row.to_vec()));
        }
    }
}
