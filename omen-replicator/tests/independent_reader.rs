//! Our Parquet files read the same in readers that share no code with ours: a few thousand
//! row changes go through the WAL and the replicator, `flush_now()` writes them, and
//! `scripts/check_parquet.py` reads the files the manifest lists with pyarrow and with DuckDB.
//! Each reader's row count, NULL counts and sums of every numeric column (hidden `_lsn` and
//! `_op` included; timestamps as microseconds, text as lengths in characters) must equal the
//! values computed from what was written, which must also equal what the `parquet` crate reads.
//!
//! Needs python3 with the duckdb and pyarrow modules: `scripts/install-test-deps.sh` installs
//! them (CI runs it). Without them this test fails and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt8Type,
    UInt64Type,
};
use omen_replicator::change::{ChangeEncoder, ColumnDef, DataType, TableSchema, Value};
use omen_replicator::manifest::Manifest;
use omen_replicator::{ReplicatorOptions, WalReplicator};
use omen_wal::{SyncMode, Wal, WalOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const TABLE: &str = "events";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh to install python3 with the \
                            duckdb and pyarrow modules (CI runs it before cargo test)";

#[path = "../../tests/cli_support/watchdog.rs"]
mod watchdog;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        watchdog::watchdog();
        let path =
            std::env::temp_dir().join(format!("omen-repl-reader-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn schema() -> TableSchema {
    TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("a", DataType::Int64, true),
            ColumnDef::new("b", DataType::Float64, true),
            ColumnDef::new("s", DataType::Utf8, true),
            ColumnDef::new("t", DataType::TimestampMicros, true),
        ],
        key: 0,
    }
}

/// A column's NULL count and sum, as `check_parquet.py` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ColumnStats {
    nulls: u64,
    /// Exact, for integers, timestamps (µs) and text (lengths in characters).
    int_sum: i128,
    /// For doubles. The test's doubles are multiples of 1/64 well below 2^40, so every sum of
    /// them is exact in any order and readers must agree to the bit.
    float_sum: f64,
}

/// A table's row count and per-column stats.
#[derive(Debug, Default, PartialEq)]
struct TableStats {
    rows: u64,
    columns: BTreeMap<String, ColumnStats>,
}

impl TableStats {
    fn add(&mut self, column: &str, value: Option<Sum>) {
        let stats = self.columns.entry(column.to_string()).or_default();
        match value {
            None => stats.nulls += 1,
            Some(Sum::Int(v)) => stats.int_sum += v,
            Some(Sum::Float(v)) => stats.float_sum += v,
        }
    }
}

enum Sum {
    Int(i128),
    Float(f64),
}

/// The non-key values of `key`'s row at `version`: each column NULL for some keys.
fn row(key: i64, version: i64) -> Vec<Value> {
    let pad = "é".repeat((key % 3) as usize) + if key % 5 == 0 { "字" } else { "" };
    vec![
        Value::Int64(key),
        if key % 17 == 0 {
            Value::Null
        } else {
            Value::Int64(key * 3 - version)
        },
        if key % 19 == 0 {
            Value::Null
        } else {
            Value::Float64((key % 1000 + version) as f64 / 64.0 - 7.5)
        },
        if key % 23 == 0 {
            Value::Null
        } else {
            Value::Utf8(format!("k{key}v{version}{pad}"))
        },
        if key % 29 == 0 {
            Value::Null
        } else {
            Value::TimestampMicros(1_600_000_000_000_000 + key * 1000 + version)
        },
    ]
}

/// Adds a written row change to the expected stats, in stored form.
fn expect_change(expected: &mut TableStats, key: i64, lsn: u64, values: Option<&[Value]>) {
    expected.rows += 1;
    expected.add("id", Some(Sum::Int(key.into())));
    for (i, name) in ["a", "b", "s", "t"].into_iter().enumerate() {
        let value = match values.map(|v| &v[i + 1]) {
            None | Some(Value::Null) => None,
            Some(Value::Int64(v) | Value::TimestampMicros(v)) => Some(Sum::Int((*v).into())),
            Some(Value::Float64(v)) => Some(Sum::Float(*v)),
            Some(Value::Utf8(v)) => Some(Sum::Int(v.chars().count() as i128)),
            Some(other) => panic!("unexpected value {other:?}"),
        };
        expected.add(name, value);
    }
    expected.add("_lsn", Some(Sum::Int(lsn.into())));
    let op = if values.is_some() { 1 } else { 2 };
    expected.add("_op", Some(Sum::Int(op)));
}

/// Writes 3000 inserts, 500 updates and 200 deletes in records of 50 to 100 changes; returns
/// the expected stats of the stored rows (every change once: compaction is off).
fn write_workload(wal: &Wal) -> TableStats {
    let mut expected = TableStats::default();
    let mut encoder = ChangeEncoder::new();
    encoder.create_table(TABLE, &schema());
    wal.append(&encoder.finish()).expect("append CREATE");
    let mut append = |changes: Vec<(i64, Option<Vec<Value>>)>| {
        let mut encoder = ChangeEncoder::new();
        for (key, values) in &changes {
            match values {
                Some(values) => encoder.upsert(TABLE, values),
                None => encoder.delete(TABLE, *key),
            }
        }
        let lsn = wal.append(&encoder.finish()).expect("append").0;
        for (key, values) in &changes {
            expect_change(&mut expected, *key, lsn, values.as_deref());
        }
    };
    for record in 0..30 {
        append(
            (record * 100..record * 100 + 100)
                .map(|key| (key, Some(row(key, 0))))
                .collect(),
        );
    }
    for record in 0..10 {
        append(
            (0..50)
                .map(|i| (record * 50 + i) * 5 % 3000)
                .map(|key| (key, Some(row(key, 1 + record))))
                .collect(),
        );
    }
    for record in 0..4 {
        append(
            (0..50)
                .map(|i| 1 + (record * 50 + i) * 7 % 2999)
                .map(|key| (key, None))
                .collect(),
        );
    }
    expected
}

/// The stats of the files the manifest lists, read with the `parquet` crate.
fn stats_of_files(root: &Path, manifest: &Manifest) -> TableStats {
    let table = &manifest.tables[TABLE];
    let mut stats = TableStats::default();
    for file in &table.files {
        let path = Manifest::file_path(root, table, file);
        let reader = std::fs::File::open(&path)
            .map_err(parquet::errors::ParquetError::from)
            .and_then(ParquetRecordBatchReaderBuilder::try_new)
            .and_then(|builder| builder.build())
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for batch in reader {
            add_batch(&mut stats, &batch.expect("Parquet batch"));
        }
    }
    stats
}

fn add_batch(stats: &mut TableStats, batch: &RecordBatch) {
    stats.rows += batch.num_rows() as u64;
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        for i in 0..column.len() {
            let value = column.is_valid(i).then(|| match field.data_type() {
                ArrowType::Int64 => Sum::Int(column.as_primitive::<Int64Type>().value(i).into()),
                ArrowType::UInt64 => Sum::Int(column.as_primitive::<UInt64Type>().value(i).into()),
                ArrowType::UInt8 => Sum::Int(column.as_primitive::<UInt8Type>().value(i).into()),
                ArrowType::Float64 => Sum::Float(column.as_primitive::<Float64Type>().value(i)),
                ArrowType::Utf8 => {
                    Sum::Int(column.as_string::<i32>().value(i).chars().count() as i128)
                }
                ArrowType::Timestamp(TimeUnit::Microsecond, None) => Sum::Int(
                    column
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(i)
                        .into(),
                ),
                other => panic!("column {name} has unexpected type {other}"),
            });
            stats.add(name, value);
        }
    }
}

/// Runs `scripts/check_parquet.py`; fails with the install hint if python3 or its modules
/// are missing.
fn run_check_script(root: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check_parquet.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(root)
        .arg(TABLE)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {INSTALL_HINT}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() != Some(3),
        "{} lacks a Python module: {INSTALL_HINT}\n{stderr}",
        script.display()
    );
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The stats one reader reported, in our form.
fn reader_stats(report: &serde_json::Value, reader: &str) -> TableStats {
    let of = &report["readers"][reader];
    let number = |v: &serde_json::Value, what: &str| -> i128 {
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
            .unwrap_or_else(|| panic!("{reader}: {what} is not an integer: {v}"))
    };
    let columns = of["columns"].as_object().expect("columns");
    TableStats {
        rows: number(&of["rows"], "rows") as u64,
        columns: columns
            .iter()
            .map(|(name, column)| {
                let nulls = number(&column["nulls"], "nulls") as u64;
                let stats = match column["kind"].as_str() {
                    Some("float") => ColumnStats {
                        nulls,
                        float_sum: column["sum"].as_f64().expect("float sum"),
                        ..ColumnStats::default()
                    },
                    _ => ColumnStats {
                        nulls,
                        int_sum: number(&column["sum"], name),
                        ..ColumnStats::default()
                    },
                };
                (name.clone(), stats)
            })
            .collect(),
    }
}

#[test]
fn pyarrow_and_duckdb_read_our_files_as_written() {
    let dir = TempDir::new("check");
    let (wal_dir, root) = (dir.0.join("wal"), dir.0.join("parquet"));
    let wal_options = WalOptions {
        sync_mode: SyncMode::None,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(&wal_dir, wal_options).expect("WAL"));
    // Several files (one 700-row batch each: a file ends with the batch that reaches
    // `max_file_rows`), all kept: no compaction.
    let options = ReplicatorOptions {
        max_batch_rows: 700,
        max_file_rows: 600,
        compaction_trigger_files: usize::MAX,
        ..ReplicatorOptions::default()
    };
    let replicator = WalReplicator::start(Arc::clone(&wal), &root, options).expect("start");
    let expected = write_workload(&wal);
    replicator.flush_now().expect("flush");
    let manifest = replicator.manifest();
    assert!(
        manifest.tables[TABLE].files.len() >= 4,
        "several files expected: {:?}",
        manifest.tables[TABLE].files
    );
    assert_eq!(expected.rows, 3700);

    let ours = stats_of_files(&root, &manifest);
    assert_eq!(ours, expected, "the parquet crate reads what was written");
    let report = run_check_script(&root);
    for reader in ["pyarrow", "duckdb"] {
        let theirs = reader_stats(&report, reader);
        assert_eq!(theirs, expected, "{reader} reads what was written");
    }
    replicator.shutdown().expect("shutdown");
}
