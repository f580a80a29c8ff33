//! A Parquet file that does not match the manifest's checksum fails the SQL scan with an
//! error naming the file, before anything decodes it; the database stays usable.

mod common;

use common::TempDir;
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::replicator::manifest::Manifest;
use omendb::{Db, DbOptions, Value, WriteBatch};

#[test]
fn corrupt_file_fails_the_scan_with_its_name() {
    let dir = TempDir::new("sql-scan-checksum");
    let db = Db::open(&dir.0, DbOptions::default()).expect("open");
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("v", DataType::Int64, true),
        ],
        key: 0,
    };
    db.create_table("t", schema).expect("create");
    let mut batch = WriteBatch::new();
    for id in 0..1000 {
        batch.insert("t", vec![Value::Int64(id), Value::Int64(id * 2)]);
    }
    db.write(&batch).expect("write");
    db.replicator().flush_now().expect("flush");
    let ok = db.sql("SELECT SUM(v) FROM t").expect("sum before");
    assert_eq!(ok.batches[0].num_rows(), 1);

    let manifest = db.replicator().manifest();
    let table = &manifest.tables["t"];
    let path = Manifest::file_path(db.replicator().root(), table, &table.files[0]);
    let mut bytes = std::fs::read(&path).expect("read file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt file");

    let error = db.sql("SELECT SUM(v) FROM t").expect_err("corrupt file");
    let message = error.to_string();
    assert!(message.contains("is corrupt"), "{message}");
    assert!(
        message.contains(&path.display().to_string()),
        "{message} should name {}",
        path.display()
    );
    // Key lookups do not need the file; the database still answers them.
    let point = db
        .sql("SELECT v FROM t WHERE id = 7")
        .expect("point lookup");
    assert_eq!(point.batches[0].num_rows(), 1);
}
