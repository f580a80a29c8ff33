#!/usr/bin/env bash
# Installs what the tests need besides Rust:
# - `psql` (Debian's postgresql-client), which tests/cli_psql.rs runs against `omendb serve`;
# - the PostgreSQL server (Debian's postgresql, version 15 on Debian 12), which
#   tests/cli_pg_differential.rs starts as a private instance (initdb into a temporary
#   directory, as the `postgres` user when run as root) to compare omendb's answers with;
# - the Python modules duckdb and pyarrow, which scripts/check_parquet.py uses to read our
#   Parquet files with readers that share no code with ours
#   (omen-replicator/tests/independent_reader.rs runs it);
# - the drivers of tests/cli_drivers.rs: psycopg 3, asyncpg, SQLAlchemy 2 and pandas
#   (Python), node-postgres (npm, into ~/.cache/omendb-drivers) and pgjdbc (Debian's
#   libpostgresql-jdbc-java, with a JDK to run the test's source file).
#
# Idempotent: installs each only when it is missing. Works on
# a fresh Debian 12 machine, where the system Python refuses `pip install` (PEP 668,
# "externally-managed-environment"): it tries, in order, a plain install (a virtualenv or a
# pyenv Python), a user install, and a user install with --break-system-packages (which
# touches only ~/.local, not Debian's packages). Installs python3 and pip with apt-get if
# they are missing (as root, or through sudo).
set -euo pipefail

modules=(duckdb pyarrow "psycopg[binary]" asyncpg sqlalchemy pandas)

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: installing system packages needs root or sudo; run as root or install: $*" >&2
        exit 1
    fi
}

apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

have_modules() {
    python3 -c 'import duckdb, pyarrow, psycopg, asyncpg, sqlalchemy, pandas' >/dev/null 2>&1
}

if ! command -v psql >/dev/null 2>&1; then
    echo "installing postgresql-client (psql not found)"
    apt_install postgresql-client
fi
echo "psql present: $(psql --version)"

# The server binaries (initdb, postgres) live under /usr/lib/postgresql/VERSION/bin, not on PATH.
# (The package also starts Debian's default cluster on port 5432; the test starts its own.)
have_postgres_server() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}
if ! have_postgres_server; then
    echo "installing postgresql (no /usr/lib/postgresql/*/bin/postgres)"
    apt_install postgresql
fi
echo "PostgreSQL server present: $(ls -d /usr/lib/postgresql/*/bin/postgres | tr '\n' ' ')"

if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3 and pip (python3 not found)"
    apt_install python3 python3-pip
fi

# node-postgres: node and npm from Debian when missing, `pg` into a cache the test finds.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (node or npm not found)"
    apt_install nodejs npm
fi
drivers_dir="${OMENDB_DRIVERS_DIR:-$HOME/.cache/omendb-drivers}"
if [ ! -d "$drivers_dir/node_modules/pg" ]; then
    echo "installing node-postgres (pg) into $drivers_dir"
    mkdir -p "$drivers_dir"
    npm install --silent --no-audit --no-fund --prefix "$drivers_dir" pg@8
fi
echo "node-postgres present in $drivers_dir"

# pgjdbc and a JDK (the test runs its Java source file directly).
if [ ! -f /usr/share/java/postgresql.jar ] || ! command -v javac >/dev/null 2>&1; then
    echo "installing libpostgresql-jdbc-java and default-jdk-headless"
    apt_install libpostgresql-jdbc-java default-jdk-headless
fi
echo "pgjdbc present: /usr/share/java/postgresql.jar"

if have_modules; then
    echo "python test dependencies present: $(python3 -c 'import duckdb, pyarrow, psycopg, asyncpg, sqlalchemy, pandas as p; print("duckdb", duckdb.__version__, "pyarrow", pyarrow.__version__, "psycopg", psycopg.__version__, "asyncpg", asyncpg.__version__, "sqlalchemy", sqlalchemy.__version__, "pandas", p.__version__)')"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing pip (python3 -m pip not found)"
    apt_install python3-pip
fi

pip_install() {
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location "$@" "${modules[@]}"
}

echo "installing python modules: ${modules[*]}"
if ! pip_install 2>/dev/null && ! pip_install --user 2>/dev/null; then
    # Last try with its errors shown: what a Debian 12 system Python needs.
    pip_install --user --break-system-packages
fi

if ! have_modules; then
    echo "error: installed ${modules[*]} but python3 cannot import them" >&2
    python3 -c 'import duckdb, pyarrow, psycopg, asyncpg, sqlalchemy, pandas'
    exit 1
fi
echo "python test dependencies installed: $(python3 -c 'import duckdb, pyarrow, psycopg, asyncpg, sqlalchemy, pandas as p; print("duckdb", duckdb.__version__, "pyarrow", pyarrow.__version__, "psycopg", psycopg.__version__, "pandas", p.__version__)')"
