#!/usr/bin/env bash
# A 10M-row INSERT ... SELECT on `omendb serve` and a private PostgreSQL 15, in one run, each
# beside a one-row writer: the statement's time, the server's peak RSS, and the writer's
# p50/p99 latency idle and during the bulk write (scripts/bench_bulk_insert.py).
#
# Usage: scripts/bench_bulk_insert.sh [OMENDB_BINARY] (default target/release/omendb).
#        Env: ROWS (10000000), IDLE_SECONDS (10), OUT (bench-report), SERVER_CONFIG (lines of
#        the server's [server] section, e.g. 'transaction_memory_mb = 256').
set -euo pipefail

BIN=${1:-${CARGO_TARGET_DIR:-target}/release/omendb}
OUT=${OUT:-bench-report}
OMEN_PORT=55451
PG_PORT=55452
mkdir -p "$OUT"
. "$(dirname "$0")/bench_common.sh"

printf '[server]\n%b\n' "${SERVER_CONFIG:-}" >"$WORK/omendb.toml"
OMENDB_PASSWORD=pw "$BIN" serve --config "$WORK/omendb.toml" --dir "$WORK/omen" \
    --listen "127.0.0.1:$OMEN_PORT" >"$WORK/omen.log" 2>&1 &
OMEN_PID=$!
start_postgres "$PG_PORT"
for _ in $(seq 100); do
    PGPASSWORD=pw psql -X -q -h 127.0.0.1 -p $OMEN_PORT -U omendb -d omendb -c "SELECT 1" \
        >/dev/null 2>&1 && break
    sleep 0.2
done
PG_MAIN=$(head -1 "$WORK/pg/postmaster.pid")
python3 "$(dirname "$0")/bench_bulk_insert.py" \
    "host=127.0.0.1 port=$OMEN_PORT user=omendb password=pw dbname=omendb" "$OMEN_PID" \
    "host=127.0.0.1 port=$PG_PORT user=omendb dbname=postgres" \
    "echo $PG_MAIN; pgrep -P $PG_MAIN" | tee "$OUT/bulk_insert.md"
