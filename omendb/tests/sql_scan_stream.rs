//! `Db::sql_stream` yields the same rows as `Db::sql`, batch by batch, from a snapshot taken
//! when it was called; statements that write are refused.

mod common;

use common::{TempDir, rows_text};
use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::{Db, DbOptions, Value, WriteBatch};

#[test]
fn stream_matches_collected_results_at_its_snapshot() {
    let dir = TempDir::new("sql-scan-stream");
    let db = Db::open(&dir.0, DbOptions::default()).expect("open");
    let schema = TableSchema {
        columns: vec![
            ColumnDef::new("id", DataType::Int64, false),
            ColumnDef::new("k", DataType::Int64, true),
        ],
        key: 0,
    };
    db.create_table("t", schema).expect("create");
    for chunk in 0..5 {
        let mut batch = WriteBatch::new();
        for id in chunk * 10_000..(chunk + 1) * 10_000 {
            batch.insert("t", vec![Value::Int64(id), Value::Int64(id % 7)]);
        }
        db.write(&batch).expect("write");
        if chunk % 2 == 0 {
            db.replicator().flush_now().expect("flush");
        }
    }
    let query = "SELECT id, k FROM t WHERE k <> 3";
    let collected = db.sql(query).expect("sql");
    let stream = db.sql_stream(query).expect("stream");
    // A write after the call is not part of the stream's snapshot.
    let mut batch = WriteBatch::new();
    batch.insert("t", vec![Value::Int64(-1), Value::Int64(3)]);
    db.write(&batch).expect("write after");
    let streamed: Vec<_> = stream.collect::<Result<_, _>>().expect("batches");
    assert!(
        streamed.len() > 1,
        "a large result comes in several batches"
    );
    let (mut streamed, mut collected) = (rows_text(&streamed), rows_text(&collected.batches));
    streamed.sort();
    collected.sort();
    assert_eq!(streamed.len(), (0..50_000).filter(|id| id % 7 != 3).count());
    assert_eq!(streamed, collected);

    let refused = db.sql_stream("DELETE FROM t WHERE id = 1");
    assert!(refused.is_err());
}
