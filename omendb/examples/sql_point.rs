//! Times `SELECT * FROM t WHERE id = k` through `Db::sql` (the router's index fast path),
//! through DataFusion's plan (`Db::sql_planned`) and `Db::get`, in one run, and prints the
//! p50/p99 of each. `cargo run --release -p omendb --example sql_point [rows]`.

use std::time::Instant;

use omendb::replicator::change::{ColumnDef, DataType, TableSchema};
use omendb::{Db, DbOptions, Value, WriteBatch};

fn percentiles(mut nanos: Vec<u64>) -> (f64, f64) {
    nanos.sort_unstable();
    let at = |q: f64| nanos[((nanos.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn main() -> Result<(), omendb::Error> {
    let rows: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("omendb-sql-point-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(&dir, DbOptions::default())?;
    db.create_table(
        "t",
        TableSchema {
            columns: vec![
                ColumnDef::new("id", DataType::Int64, false),
                ColumnDef::new("qty", DataType::Int64, true),
                ColumnDef::new("sku", DataType::Utf8, true),
            ],
            key: 0,
        },
    )?;
    for start in (0..rows).step_by(10_000) {
        let mut batch = WriteBatch::new();
        for id in start..(start + 10_000).min(rows) {
            batch.insert(
                "t",
                vec![
                    Value::Int64(id * 7),
                    Value::Int64(id % 100),
                    Value::Utf8(format!("sku-{id}")),
                ],
            );
        }
        db.write(&batch)?;
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut key = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % rows as u64) as i64 * 7
    };
    let mut time = |n: usize, f: &mut dyn FnMut(i64) -> Result<(), omendb::Error>| {
        let mut nanos = Vec::with_capacity(n);
        for _ in 0..n {
            let k = key();
            let start = Instant::now();
            f(k)?;
            nanos.push(start.elapsed().as_nanos() as u64);
        }
        Ok::<_, omendb::Error>(percentiles(nanos))
    };
    let check = |rows: usize| {
        assert_eq!(rows, 1, "a point query returned {rows} rows");
    };
    time(2_000, &mut |k| {
        check(db.sql(&format!("SELECT * FROM t WHERE id = {k}"))?.batches[0].num_rows());
        Ok(())
    })?;
    let fast = time(20_000, &mut |k| {
        check(db.sql(&format!("SELECT * FROM t WHERE id = {k}"))?.batches[0].num_rows());
        Ok(())
    })?;
    let planned = time(1_000, &mut |k| {
        let result = db.sql_planned(&format!("SELECT * FROM t WHERE id = {k}"))?;
        check(result.batches.iter().map(|b| b.num_rows()).sum());
        Ok(())
    })?;
    let get = time(20_000, &mut |k| {
        assert!(db.get("t", k)?.is_some());
        Ok(())
    })?;
    println!("{rows} rows; p50 / p99 in µs");
    println!("Db::get                        {:8.2} {:8.2}", get.0, get.1);
    println!(
        "Db::sql (router fast path)     {:8.2} {:8.2}",
        fast.0, fast.1
    );
    println!(
        "Db::sql_planned (DataFusion)   {:8.2} {:8.2}",
        planned.0, planned.1
    );
    println!("fast path vs DataFusion (p50): {:.0}x", planned.0 / fast.0);
    db.close()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
