#!/usr/bin/env python3
"""A bulk INSERT ... SELECT next to a one-row writer, on `omendb serve` and PostgreSQL.

For each system (a libpq connection string each): the one-row writer's latency when idle
(UPDATE of one of 1000 rows, autocommit, for IDLE_SECONDS), then the bulk statement
`INSERT INTO bulk SELECT x, x, repeat('x', 100) FROM generate_series(1, ROWS)` on another
connection while the writer keeps going; the bulk statement's time, the writer's p50/p99
during it, and the server's peak RSS (VmHWM of the process `pid_of` names).

Used by scripts/bench_bulk_insert.sh, which starts both servers. Prints a Markdown table.
"""
import os
import sys
import threading
import time

import psycopg

TRACE = []
ROWS = int(os.environ.get("ROWS", "10000000"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "10"))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def writer(dsn, stop, latencies):
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            i += 1
            started = time.perf_counter()
            conn.execute("UPDATE small SET v = v + 1 WHERE id = %s", (i % 1000 + 1,))
            latencies.append((time.perf_counter() - started) * 1000)
            if os.environ.get("TRACE"):
                TRACE.append((started, latencies[-1]))


def vm_hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except FileNotFoundError:
        pass  # a process that ended meanwhile
    return -1


def run(name, dsn, pids):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bulk (id BIGINT PRIMARY KEY, v BIGINT, s TEXT)")
        conn.execute("CREATE TABLE small (id BIGINT PRIMARY KEY, v BIGINT)")
        conn.execute("INSERT INTO small SELECT x, 0 FROM generate_series(1, 1000) AS g(x)")
        idle = []
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(dsn, stop, idle))
        thread.start()
        time.sleep(IDLE_SECONDS)
        stop.set()
        thread.join()
        busy = []
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(dsn, stop, busy))
        thread.start()
        started = time.perf_counter()
        conn.execute(
            f"INSERT INTO bulk SELECT x, x, repeat('x', 100) FROM generate_series(1, {ROWS}) AS g(x)"
        )
        took = time.perf_counter() - started
        stop.set()
        if os.environ.get("TRACE"):
            t0 = started
            windows = {}
            for t, lat in TRACE:
                if t >= t0:
                    windows.setdefault(int((t - t0) / 2), []).append(lat)
            for w in sorted(windows):
                v = windows[w]
                print(f"  {name} t={2*w}s n={len(v)} p50={percentile(v,0.5):.2f} p99={percentile(v,0.99):.2f} max={max(v):.0f}", file=sys.stderr)
            TRACE.clear()
        thread.join()
        started = time.perf_counter()
        count = conn.execute("SELECT count(*) FROM bulk").fetchone()[0]
        counted = time.perf_counter() - started
        assert count == ROWS, f"{name}: {count} rows"
    peak = max(vm_hwm(pid) for pid in pids())
    return (
        f"| {name} | {took:.1f} | {counted:.1f} | {peak} | {percentile(idle, 0.5):.2f} | "
        f"{percentile(idle, 0.99):.2f} | {percentile(busy, 0.5):.2f} | "
        f"{percentile(busy, 0.99):.2f} | {max(busy):.0f} | {len(busy)} |"
    )


def main():
    omen_dsn, omen_pid, pg_dsn, pg_pids_cmd = sys.argv[1:5]
    print(f"# INSERT INTO bulk SELECT ... FROM generate_series(1, {ROWS:,})\n")
    print(
        "| system | bulk s | count(*) after, s | peak RSS MiB | idle writer p50 ms | idle p99 ms | "
        "writer p50 ms during | p99 ms during | max ms during | writes during |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(run("OmenDB", omen_dsn, lambda: [int(omen_pid)]), flush=True)
    pg_pids = lambda: [int(p) for p in os.popen(pg_pids_cmd).read().split()]
    print(run("PostgreSQL", pg_dsn, pg_pids), flush=True)


if __name__ == "__main__":
    main()
