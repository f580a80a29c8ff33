#!/usr/bin/env python3
"""Reads one table's Parquet files, as OmenDB's replicator manifest lists them, with two
readers that share no code with ours (pyarrow and DuckDB), and prints what each saw as JSON.

Usage: check_parquet.py ROOT TABLE

ROOT is the replicator's directory: it holds MANIFEST.json (see omen-replicator/src/manifest.rs:
`tables` -> TABLE -> `dir` and `files[].name`, the files' paths relative to ROOT/dir). Only
the files the manifest lists are read: a file it does not list is not part of the table.

Output, one JSON object on stdout:

    {"table": ..., "files": N, "readers": {"pyarrow": R, "duckdb": R}}

where each R is {"rows": N, "columns": {NAME: {"kind": K, "nulls": N, "sum": S}}} for every
numeric column, hidden `_lsn` and `_op` included: K is "int" (exact integer sum), "float"
(sum as a double; readers may add in different orders), "timestamp" (exact sum of the
microseconds since the epoch) or "string" (sum of lengths in characters). A column of
only NULLs has sum 0. A table without files reads as 0 rows and no columns.

Exit status: 0 on success, 2 on bad arguments or manifest, 3 when a module is missing
(run scripts/install-test-deps.sh).
"""

import json
import os
import sys


def fail(status, message):
    print(f"check_parquet.py: {message}", file=sys.stderr)
    sys.exit(status)


try:
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
except ImportError as error:
    fail(3, f"missing Python module ({error}); run scripts/install-test-deps.sh")


def kind_of(arrow_type):
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return None


def table_files(root, table):
    path = os.path.join(root, "MANIFEST.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        fail(2, f"cannot read {path}: {error}")
    entry = manifest.get("tables", {}).get(table)
    if entry is None:
        fail(2, f"{path} has no table {table!r}")
    return [os.path.join(root, entry["dir"], f["name"]) for f in entry["files"]]


def with_pyarrow(files, schema):
    table = pa.concat_tables([pq.read_table(f) for f in files])
    columns = {}
    for field in schema:
        kind = kind_of(field.type)
        if kind is None:
            continue
        column = table.column(field.name)
        if kind == "timestamp":
            column = column.cast(pa.int64())
        elif kind == "string":
            column = pc.utf8_length(column)
        if kind == "float":
            total = pc.sum(column).as_py() or 0.0
        else:
            # Exact: Python integers do not overflow (Arrow's sum of int64 would wrap).
            total = sum(v for v in column.to_pylist() if v is not None)
        columns[field.name] = {"kind": kind, "nulls": column.null_count, "sum": total}
    return {"rows": table.num_rows, "columns": columns}


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def with_duckdb(files, schema):
    kinds = {f.name: kind_of(f.type) for f in schema if kind_of(f.type) is not None}
    connection = duckdb.connect()
    selects = ["count(*)"]
    for name, kind in kinds.items():
        q = quote(name)
        value = {
            "int": f"CAST({q} AS HUGEINT)",
            "float": f"CAST({q} AS DOUBLE)",
            "timestamp": f"CAST(epoch_us({q}) AS HUGEINT)",
            "string": f"CAST(length({q}) AS HUGEINT)",
        }[kind]
        selects += [f"count(*) - count({q})", f"sum({value})"]
    query = f"SELECT {', '.join(selects)} FROM read_parquet(?)"
    row = connection.execute(query, [files]).fetchone()
    columns = {}
    for i, (name, kind) in enumerate(kinds.items()):
        nulls, total = row[1 + 2 * i], row[2 + 2 * i]
        if total is None:
            total = 0.0 if kind == "float" else 0
        columns[name] = {
            "kind": kind,
            "nulls": int(nulls),
            "sum": float(total) if kind == "float" else int(total),
        }
    return {"rows": int(row[0]), "columns": columns}


def main(argv):
    if len(argv) != 3:
        fail(2, "usage: check_parquet.py ROOT TABLE")
    root, table = argv[1], argv[2]
    files = table_files(root, table)
    for f in files:
        if not os.path.isfile(f):
            fail(2, f"the manifest lists {f}, which does not exist")
    if files:
        schema = pq.read_schema(files[0])
        readers = {"pyarrow": with_pyarrow(files, schema), "duckdb": with_duckdb(files, schema)}
    else:
        # An empty table: nothing to read (and no file to take a schema from).
        readers = {name: {"rows": 0, "columns": {}} for name in ("pyarrow", "duckdb")}
    print(json.dumps({"table": table, "files": len(files), "readers": readers}))


if __name__ == "__main__":
    main(sys.argv)
