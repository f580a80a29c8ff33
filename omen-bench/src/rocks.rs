//! The RocksDB baseline: the same pairs as 8-byte big-endian keys and 8-byte values, bulk
//! loaded through an SST file, read from a block cache sized to hold everything, with
//! 10-bit bloom filters.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, IngestExternalFileOptions, Options,
    SstFileWriter, WriteOptions,
};

/// Errors of the baseline (RocksDB's own).
pub type RocksError = rocksdb::Error;

/// A RocksDB instance in a scratch directory, deleted on drop.
pub struct RocksBaseline {
    db: DB,
    cache: Cache,
    dir: PathBuf,
    write_options: WriteOptions,
}

/// Reads every entry of `db` once (so that its blocks sit in the cache); returns the count.
pub(crate) fn read_all(db: &DB) -> u64 {
    let mut iter = db.raw_iterator();
    iter.seek_to_first();
    let mut count = 0;
    while iter.valid() {
        count += 1;
        iter.next();
    }
    count
}

fn options(cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    // Index and filter blocks stay in the table reader (always in memory): a block cache
    // splits into shards too small for a 10M-key filter block, which would then be re-read
    // from the file on every lookup.
    table.set_cache_index_and_filter_blocks(false);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(DBCompressionType::None);
    options
}

impl RocksBaseline {
    /// Creates the database in `dir` (which must not exist) and ingests the sorted `pairs`.
    pub fn bulk_load(dir: &Path, pairs: &[(u64, u64)]) -> Result<Self, RocksError> {
        let _ = std::fs::remove_dir_all(dir);
        // Room for every block of the data set, twice over.
        let cache = Cache::new_lru_cache((pairs.len() * 64).max(64 << 20));
        let options = options(&cache);
        let db = DB::open(&options, dir)?;
        let sst = dir.join("bulk.sst");
        let mut writer = SstFileWriter::create(&options);
        writer.open(&sst)?;
        for (key, value) in pairs {
            writer.put(key.to_be_bytes(), value.to_le_bytes())?;
        }
        writer.finish()?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        db.ingest_external_file_opts(&ingest, vec![sst])?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(Self {
            db,
            cache,
            dir: dir.to_path_buf(),
            write_options,
        })
    }

    /// Reads every pair once so that all blocks sit in the cache.
    pub fn warm(&self) -> u64 {
        crate::rocks::read_all(&self.db)
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u64> {
        let value = self.db.get_pinned(key.to_be_bytes()).ok()??;
        Some(u64::from_le_bytes(value.as_ref().try_into().ok()?))
    }

    /// Sums the values of up to `count` pairs from `start` on.
    pub fn scan(&self, start: u64, count: usize) -> u64 {
        let mut iter = self.db.raw_iterator();
        iter.seek(start.to_be_bytes());
        let mut sum = 0u64;
        for _ in 0..count {
            let Some(value) = iter.value() else { break };
            let value = value.try_into().map_or(0, u64::from_le_bytes);
            sum = sum.wrapping_add(value);
            iter.next();
        }
        sum
    }

    /// Writes a pair (no WAL: the in-memory structures it is compared with have none).
    pub fn put(&self, key: u64, value: u64) -> Result<(), RocksError> {
        self.db
            .put_opt(key.to_be_bytes(), value.to_le_bytes(), &self.write_options)
    }

    /// Memory held for the data: block cache contents, table readers and memtables.
    pub fn memory_bytes(&self) -> usize {
        let property =
            |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0) as usize;
        self.cache.get_usage()
            + property("rocksdb.estimate-table-readers-mem")
            + property("rocksdb.cur-size-all-mem-tables")
    }
}

impl Drop for RocksBaseline {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
