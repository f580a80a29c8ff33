//! The manifest: the single source of truth for which Parquet files are visible, each table's
//! schema, and how far the replicator got. It is replaced atomically: written to a temporary
//! file, fsynced, renamed over the old one, and the directory fsynced.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::change::TableSchema;
use crate::error::{ReplicatorError, Result};

/// The manifest's file name in the replicator's directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
const MANIFEST_TMP: &str = "MANIFEST.json.tmp";
const FORMAT_VERSION: u32 = 1;

/// One Parquet file of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// File name inside the table's directory.
    pub name: String,
    /// Rows (row versions, deletes included).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    /// Smallest key.
    pub min_key: i64,
    /// Largest key.
    pub max_key: i64,
    /// Smallest `_lsn`.
    pub min_lsn: u64,
    /// Largest `_lsn`.
    pub max_lsn: u64,
    /// Each key appears in at most one row (no older versions inside the file), so a reader
    /// that sees no newer source for the file's keys need not resolve versions or even read
    /// the key. Manifests written before this field existed read `false`.
    #[serde(default)]
    pub distinct_keys: bool,
    /// Snapshots at or above this LSN read the file exactly: compaction dropped no version
    /// they see (0 for a flushed file, which holds every version; see
    /// `ReplicatorOptions::snapshot_pin`). A snapshot below both this and `max_lsn` may miss a
    /// version. Manifests written before this field existed read `u64::MAX` (then only
    /// snapshots at or above `max_lsn` are sure).
    #[serde(default = "unknown_completeness")]
    pub complete_from: u64,
}

fn unknown_completeness() -> u64 {
    u64::MAX
}

impl FileMeta {
    /// Whether a snapshot at `lsn` reads this file exactly.
    pub fn exact_at(&self, lsn: u64) -> bool {
        lsn >= self.complete_from.min(self.max_lsn)
    }
}

/// A table as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableManifest {
    /// The table's current schema.
    pub schema: TableSchema,
    /// LSN of the `CREATE TABLE`.
    pub created_lsn: u64,
    /// LSN of the change that gave the current schema.
    pub schema_lsn: u64,
    /// Every row change of this table with an LSN at or below this is in `files`.
    pub flushed_lsn: u64,
    /// Subdirectory holding the files: `t<create LSN>-<entry index>`.
    pub dir: String,
    /// Files in LSN order (each file's LSNs are above the previous file's).
    pub files: Vec<FileMeta>,
}

/// The whole manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every WAL record at or below this LSN is reflected in the files; replication resumes
    /// after it.
    pub checkpoint_lsn: u64,
    /// Next file number to use.
    pub next_file_id: u64,
    /// Tables by name.
    pub tables: BTreeMap<String, TableManifest>,
}

impl Manifest {
    /// Loads the manifest from `root`, or an empty one if there is none.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: FORMAT_VERSION,
                    ..Self::default()
                });
            }
            Err(e) => return Err(ReplicatorError::io("read manifest", path, e)),
        };
        let manifest: Self =
            serde_json::from_slice(&bytes).map_err(|e| ReplicatorError::BadManifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if manifest.version != FORMAT_VERSION {
            return Err(ReplicatorError::BadManifest {
                path,
                reason: format!("unsupported format version {}", manifest.version),
            });
        }
        Ok(manifest)
    }

    /// Replaces the manifest in `root` atomically and durably.
    pub fn store(&self, root: &Path) -> Result<()> {
        self.store_with(root, Self::sync_tmp)
    }

    /// The fsync of the temporary manifest (at `path`) in [`Manifest::store`].
    pub(crate) fn sync_tmp(tmp: &File, path: &Path) -> Result<()> {
        tmp.sync_all()
            .map_err(|e| ReplicatorError::io("fsync manifest", path, e))
    }

    /// [`Manifest::store`], with `make_durable` (given the temporary file and its path) in
    /// place of the temporary file's fsync: it must make the file durable, and may make more
    /// so.
    pub(crate) fn store_with(
        &self,
        root: &Path,
        make_durable: impl FnOnce(&File, &Path) -> Result<()>,
    ) -> Result<()> {
        let tmp = root.join(MANIFEST_TMP);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ReplicatorError::BadManifest {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| ReplicatorError::io("create manifest", &tmp, e))?;
        file.write_all(&bytes)
            .map_err(|e| ReplicatorError::io("write manifest", &tmp, e))?;
        make_durable(&file, &tmp)?;
        drop(file);
        let path = root.join(MANIFEST_FILE);
        std::fs::rename(&tmp, &path)
            .map_err(|e| ReplicatorError::io("rename manifest", &path, e))?;
        sync_dir(root)
    }

    /// The path of a table's file.
    pub fn file_path(root: &Path, table: &TableManifest, file: &FileMeta) -> PathBuf {
        root.join(&table.dir).join(&file.name)
    }
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ReplicatorError::io("fsync directory", dir, e))
}
