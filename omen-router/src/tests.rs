use std::ops::Bound::{Excluded, Included, Unbounded};
use std::ops::RangeBounds;

use datafusion::sql::parser::DFParser;
use proptest::prelude::*;

use super::*;

fn parse(sql: &str) -> datafusion::sql::parser::Statement {
    let mut statements = DFParser::parse_sql(sql).expect("valid SQL");
    assert_eq!(statements.len(), 1);
    statements.pop_front().expect("one statement")
}

fn route(sql: &str) -> (Route, Option<KeyRead>) {
    let (shape, read) = classify(&parse(sql));
    (RuleRouter::default().route(shape, read.as_ref()), read)
}

#[test]
fn each_kind_of_statement_goes_where_the_rule_says() {
    let cases = [
        (
            "SELECT * FROM t WHERE id = 5",
            Shape::Point,
            Path::IndexPoint,
        ),
        (
            "SELECT v FROM t WHERE 5 = id",
            Shape::Point,
            Path::IndexPoint,
        ),
        (
            "SELECT v, s AS x FROM t WHERE id IN (3, 1, 3)",
            Shape::MultiPoint,
            Path::IndexPoint,
        ),
        (
            "SELECT * FROM t WHERE id BETWEEN 10 AND 20",
            Shape::ShortRange,
            Path::IndexRange,
        ),
        (
            "SELECT * FROM t WHERE id > 10 AND id <= 20",
            Shape::ShortRange,
            Path::IndexRange,
        ),
        (
            "SELECT * FROM t WHERE id >= 0",
            Shape::LongRange,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id BETWEEN 0 AND 1000000",
            Shape::LongRange,
            Path::DataFusion,
        ),
        ("SELECT count(*) FROM t", Shape::Aggregate, Path::DataFusion),
        (
            "SELECT s, sum(v) FROM t GROUP BY s",
            Shape::Aggregate,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t a JOIN u b ON a.id = b.id",
            Shape::Join,
            Path::DataFusion,
        ),
        ("SELECT * FROM t, u", Shape::Join, Path::DataFusion),
        (
            "INSERT INTO t VALUES (1, 2)",
            Shape::Write,
            Path::DataFusion,
        ),
        (
            "UPDATE t SET v = 1 WHERE id = 1",
            Shape::Write,
            Path::DataFusion,
        ),
        ("DELETE FROM t WHERE id = 1", Shape::Write, Path::DataFusion),
        (
            "CREATE TABLE x (id BIGINT PRIMARY KEY)",
            Shape::Other,
            Path::DataFusion,
        ),
        // Key-read look-alikes with one more clause go to the engine.
        (
            "SELECT * FROM t WHERE id = 5 LIMIT 1",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = 5 ORDER BY v",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT DISTINCT v FROM t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT v + 1 FROM t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = 5 OR id = 6",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = 5 AND v = 1",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = '5'",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = 5.0",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id NOT IN (1)",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t WHERE id = 99999999999999999999",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT v, v FROM t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM s.t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "SELECT * FROM t AS x WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "WITH w AS (SELECT 1) SELECT * FROM t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
        (
            "EXPLAIN SELECT * FROM t WHERE id = 5",
            Shape::Other,
            Path::DataFusion,
        ),
    ];
    for (sql, shape, path) in cases {
        let (route, _) = route(sql);
        assert_eq!((route.shape, route.path), (shape, path), "{sql}");
        assert_eq!(route.chooser, Chooser::Rule);
    }
}

#[test]
fn a_key_read_names_its_table_columns_and_keys_as_datafusion_resolves_them() {
    let (_, read) = route(r#"SELECT V, "S" AS Label FROM T WHERE ID IN (3, -1, 3)"#);
    let read = read.expect("a key read");
    assert_eq!(read.table, "t");
    assert_eq!(read.column, "id");
    assert_eq!(read.keys, Keys::Points(vec![-1, 3]));
    let columns = read.columns.expect("columns");
    let pairs: Vec<_> = columns
        .iter()
        .map(|c| (c.column.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(pairs, [("v", "v"), ("S", "label")]);
    let (_, read) = route("SELECT * FROM t WHERE id >= 5 AND id < 9 AND id > 5");
    assert_eq!(
        read.expect("a key read").keys,
        Keys::Range(Excluded(5), Excluded(9))
    );
}

#[test]
fn the_fast_path_never_takes_what_the_rule_gives_the_engine() {
    let router = RuleRouter {
        short_range_keys: 0,
    };
    let (shape, read) = classify(&parse("SELECT * FROM t WHERE id BETWEEN 1 AND 2"));
    assert_eq!(router.route(shape, read.as_ref()).path, Path::DataFusion);
}

fn bound() -> impl Strategy<Value = std::ops::Bound<i64>> {
    prop_oneof![
        (-20i64..20).prop_map(Included),
        (-20i64..20).prop_map(Excluded),
        Just(Unbounded),
    ]
}

proptest! {
    /// Combining two ranges with AND admits exactly the keys both admit, and `width` counts
    /// them.
    #[test]
    fn and_of_ranges_is_their_intersection(a in (bound(), bound()), b in (bound(), bound())) {
        let text = |(low, high): (std::ops::Bound<i64>, std::ops::Bound<i64>)| {
            let mut parts = Vec::new();
            match low {
                Included(k) => parts.push(format!("id >= {k}")),
                Excluded(k) => parts.push(format!("id > {k}")),
                Unbounded => {}
            }
            match high {
                Included(k) => parts.push(format!("id <= {k}")),
                Excluded(k) => parts.push(format!("id < {k}")),
                Unbounded => {}
            }
            parts
        };
        let mut parts = text(a);
        parts.extend(text(b));
        prop_assume!(!parts.is_empty());
        let sql = format!("SELECT * FROM t WHERE {}", parts.join(" AND "));
        let (_, read) = classify(&parse(&sql));
        let keys = read.expect("a key read").keys;
        let Keys::Range(low, high) = keys.clone() else { panic!("{keys:?}") };
        let admits = |(low, high): (std::ops::Bound<i64>, std::ops::Bound<i64>), k: i64| {
            (low, high).contains(&k)
        };
        for k in -25..25 {
            prop_assert_eq!((low, high).contains(&k), admits(a, k) && admits(b, k), "{} at {}", sql, k);
        }
        if low != Unbounded && high != Unbounded {
            let count = (-25..25).filter(|k| (low, high).contains(k)).count() as u64;
            prop_assert_eq!(keys.width(), count, "{}", sql);
        }
    }
}
