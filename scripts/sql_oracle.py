#!/usr/bin/env python3
"""Runs SQL in DuckDB, the oracle of omendb/tests/sql_differential.rs.

Reads JSON from stdin: {"setup": [statement, ...], "queries": [query, ...]}. Runs the setup
statements in order on an in-memory database, then each query, and prints JSON: a list with,
per query, either {"rows": [[value, ...], ...]} or {"error": "message"}. Values are JSON null,
booleans, numbers (integers as integers, others as floats) and strings (dates ISO 8601), so
the Rust side can normalise both engines' results the same way.

Install DuckDB with scripts/install-test-deps.sh.
"""
import datetime
import decimal
import json
import sys

import duckdb


def plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def main():
    request = json.load(sys.stdin)
    db = duckdb.connect(":memory:")
    db.execute("SET threads = 1")
    for statement in request["setup"]:
        db.execute(statement)
    results = []
    for query in request["queries"]:
        try:
            rows = db.execute(query).fetchall()
            results.append({"rows": [[plain(v) for v in row] for row in rows]})
        except duckdb.Error as error:
            results.append({"error": str(error)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
