#!/usr/bin/env bash
# pgbench against `omendb serve` and a private PostgreSQL 15 on the same machine, in one run,
# with the same tables created by SQL and the same custom scripts (pgbench's own schema needs
# COPY, which OmenDB does not speak yet):
#
# - tpcb: a TPC-B-like transfer (BEGIN; 3 UPDATEs; 1 SELECT; 1 INSERT; COMMIT), with
#   --max-tries so that serialization failures (40001: OmenDB's first-committer-wins) are
#   retried and counted; PostgreSQL waits on row locks instead;
# - insert: autocommit single-row INSERTs (the write path without a block);
# - point: a prepared point SELECT by key.
#
# Prints TPS, p50/p99 latency (from pgbench's per-transaction log) and retries per system and
# script, and writes them to $OUT/pgbench.md.
#
# Usage: scripts/bench_pgbench.sh [OMENDB_BINARY] (default target/release/omendb; build it with
#        `cargo build --release`). Env: CLIENTS (4), SECONDS_EACH (20), ACCOUNTS (100000),
#        OUT (bench-report).
set -euo pipefail

BIN=${1:-${CARGO_TARGET_DIR:-target}/release/omendb}
CLIENTS=${CLIENTS:-4}
SECONDS_EACH=${SECONDS_EACH:-20}
ACCOUNTS=${ACCOUNTS:-100000}
OUT=${OUT:-bench-report}
OMEN_PORT=55441
PG_PORT=55442
mkdir -p "$OUT"
. "$(dirname "$0")/bench_common.sh"

echo "starting omendb serve ($BIN) and PostgreSQL ($PG_BIN) in $WORK"
OMENDB_PASSWORD=pw "$BIN" serve --dir "$WORK/omen" --listen "127.0.0.1:$OMEN_PORT" \
    >"$WORK/omen.log" 2>&1 &
OMEN_PID=$!
start_postgres "$PG_PORT"

export PGPASSWORD=pw
omen() { psql -X -q -h 127.0.0.1 -p $OMEN_PORT -U omendb -d omendb "$@"; }
pg() { psql -X -q -h 127.0.0.1 -p $PG_PORT -U omendb -d postgres "$@"; }
for _ in $(seq 100); do omen -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

SCHEMA="
CREATE TABLE branches (bid BIGINT PRIMARY KEY, bbalance BIGINT, filler TEXT);
CREATE TABLE tellers (tid BIGINT PRIMARY KEY, bid BIGINT, tbalance BIGINT, filler TEXT);
CREATE TABLE accounts (aid BIGINT PRIMARY KEY, bid BIGINT, abalance BIGINT, filler TEXT);
CREATE TABLE history (hid BIGINT PRIMARY KEY, tid BIGINT, bid BIGINT, aid BIGINT, delta BIGINT, mtime TIMESTAMP);
CREATE TABLE inserts (id BIGINT PRIMARY KEY, v BIGINT, s TEXT);
"
LOAD="
INSERT INTO branches SELECT x, 0, '' FROM generate_series(1, 4) AS g(x);
INSERT INTO tellers SELECT x, (x - 1) / 10 + 1, 0, '' FROM generate_series(1, 40) AS g(x);
INSERT INTO accounts SELECT x, (x - 1) / 25000 + 1, 0, '' FROM generate_series(1, $ACCOUNTS) AS g(x);
"
for system in omen pg; do
    printf '%s\n' "$SCHEMA" | $system -f - >/dev/null
    # One statement each: a Query of several is one transaction.
    printf '%s\n' "$LOAD" | while IFS= read -r line; do
        if [ -n "$line" ]; then $system -c "$line" >/dev/null; fi
    done
done

cat >"$WORK/tpcb.sql" <<EOF
\set aid random(1, $ACCOUNTS)
\set bid random(1, 4)
\set tid random(1, 40)
\set delta random(-5000, 5000)
\set hid random(1, 9000000000000000000)
BEGIN;
UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM accounts WHERE aid = :aid;
UPDATE tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO history (hid, tid, bid, aid, delta, mtime) VALUES (:hid, :tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
COMMIT;
EOF
cat >"$WORK/insert.sql" <<EOF
\set id random(1, 9000000000000000000)
INSERT INTO inserts VALUES (:id, :id, 'payload');
EOF
cat >"$WORK/point.sql" <<EOF
\set aid random(1, $ACCOUNTS)
SELECT abalance FROM accounts WHERE aid = :aid;
EOF

report="$OUT/pgbench.md"
{
    echo "# pgbench: OmenDB vs PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
    echo
    echo "$CLIENTS clients, -M prepared, ${SECONDS_EACH} s per run, $ACCOUNTS accounts, $(date -u +%F)."
    echo
    echo "| script | system | TPS | p50 ms | p99 ms | failed | retried |"
    echo "|---|---|---:|---:|---:|---:|---:|"
} >"$report"

run() {
    local script=$1 system=$2 port=$3 db=$4
    local log="$WORK/log-$script-$system"
    rm -f "$log".*
    local out
    out=$(cd "$WORK" && pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_EACH" \
        --max-tries=1000 -l --log-prefix="$log" -f "$WORK/$script.sql" \
        -h 127.0.0.1 -p "$port" -U omendb "$db" 2>&1) || { echo "$out"; return 1; }
    local tps failed retried
    tps=$(echo "$out" | awk '/^tps/ {printf "%.0f", $3}')
    failed=$(echo "$out" | awk '/number of failed transactions/ {print $5}')
    retried=$(echo "$out" | awk '/number of transactions retried/ {print $5}')
    # Per-transaction log: client, transaction, latency in microseconds, ...
    read -r p50 p99 < <(cat "$log".* | awk '{print $3}' | sort -n | awk '
        { a[NR] = $1 } END { printf "%.2f %.2f\n", a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000 }')
    echo "$script $system: $tps tps, p50 $p50 ms, p99 $p99 ms, failed ${failed:-0}, retried ${retried:-0}"
    echo "| $script | $system | $tps | $p50 | $p99 | ${failed:-0} | ${retried:-0} |" >>"$report"
}

for script in tpcb insert point; do
    run "$script" OmenDB $OMEN_PORT omendb
    run "$script" PostgreSQL $PG_PORT postgres
done
# The invariant of the transfers: every committed delta is in all three balances.
for system in omen pg; do
    sums=$($system -At -c "SELECT (SELECT sum(abalance) FROM accounts), (SELECT sum(tbalance) FROM tellers), (SELECT sum(bbalance) FROM branches), (SELECT coalesce(sum(delta), 0) FROM history)")
    echo "$system balances (accounts|tellers|branches|history): $sums"
    echo "" >>"$report"
    echo "$system: sums of balances accounts|tellers|branches|history deltas: $sums" >>"$report"
done
echo "written $report"
