# Sourced by the bench scripts that run `omendb serve` beside a private PostgreSQL 15 in one
# run: the PostgreSQL binaries, a work directory, and both servers stopped (and the directory
# removed) on exit. The sourcing script sets OMEN_PID once it starts `omendb serve`.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/omendb-bench.XXXXXX)
chmod 755 "$WORK"

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

cleanup() {
    [ -n "${OMEN_PID:-}" ] && kill "$OMEN_PID" 2>/dev/null || true
    as_postgres "$PG_BIN/pg_ctl -D $WORK/pg -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts PostgreSQL on port $1 (user omendb, trust authentication) in $WORK/pg.
start_postgres() {
    mkdir -p "$WORK/pg" "$WORK/pgrun"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$WORK/pg" "$WORK/pgrun"; fi
    as_postgres "$PG_BIN/initdb -D $WORK/pg -A trust -U omendb" >/dev/null
    as_postgres "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $1 -k $WORK/pgrun' -l $WORK/pgrun/pg.log -w start" >/dev/null
}
