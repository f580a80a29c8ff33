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
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/omendb-bulk.XXXXXX)
chmod 755 "$WORK"
OMEN_PORT=55451
PG_PORT=55452
mkdir -p "$OUT"

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
cleanup() {
    [ -n "${OMEN_PID:-}" ] && kill "$OMEN_PID" 2>/dev/null || true
    as_postgres "$PG_BIN/pg_ctl -D $WORK/pg -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

printf '[server]\n%b\n' "${SERVER_CONFIG:-}" >"$WORK/omendb.toml"
OMENDB_PASSWORD=pw "$BIN" serve --config "$WORK/omendb.toml" --dir "$WORK/omen" \
    --listen "127.0.0.1:$OMEN_PORT" >"$WORK/omen.log" 2>&1 &
OMEN_PID=$!
mkdir -p "$WORK/pg" "$WORK/pgrun"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$WORK/pg" "$WORK/pgrun"; fi
as_postgres "$PG_BIN/initdb -D $WORK/pg -A trust -U omendb" >/dev/null
as_postgres "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $PG_PORT -k $WORK/pgrun' -l $WORK/pgrun/pg.log -w start" >/dev/null
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
