"""The Python drivers against a running `omendb serve`, each with its default settings:
psycopg 3, asyncpg, SQLAlchemy 2 (Core) and pandas. Every result is asserted; the script
exits non-zero on the first mismatch.

Usage: OMENDB_PORT=5433 OMENDB_PASSWORD=... python3 python_drivers.py [driver ...]
"""

import asyncio
import datetime
import os
import sys

HOST = "127.0.0.1"
PORT = int(os.environ["OMENDB_PORT"])
PASSWORD = os.environ["OMENDB_PASSWORD"]
USER = os.environ.get("OMENDB_USER", "omendb")

DAY = datetime.date(2024, 2, 29)
AT = datetime.datetime(2024, 2, 29, 13, 14, 15, 161718)
COLUMNS = "id BIGINT PRIMARY KEY, name TEXT, qty INT, price DOUBLE, ok BOOLEAN, day DATE, at TIMESTAMP"
FULL_ROW = (1, "o'brien; DROP TABLE x", 10, 1.5, True, DAY, AT)


def check(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def psycopg_driver():
    import psycopg

    table = "py_psycopg"
    with psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="omendb") as conn:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        cur.execute(f"CREATE TABLE {table} ({COLUMNS})")
        conn.commit()
        cur.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)", FULL_ROW)
        check(cur.rowcount, 1, "INSERT rowcount")
        check(cur.description, None, "INSERT has no result columns")
        conn.commit()
        # Reused 100 times: psycopg prepares it server-side from the 5th execution.
        for i in range(2, 102):
            cur.execute(
                f"INSERT INTO {table} (id, name, qty) VALUES (%s, %s, %s)", (i, f"n{i}", i)
            )
            check(cur.rowcount, 1, f"INSERT {i} rowcount")
            conn.commit()
        # NULLs in every type.
        cur.execute(
            f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (500, None, None, None, None, None, None),
        )
        conn.commit()
        # An error, then a good query on the same connection.
        try:
            cur.execute("SELECT * FROM no_such_table")
            raise AssertionError("a query of a missing table succeeded")
        except psycopg.errors.UndefinedTable:
            conn.rollback()
        cur.execute(f"SELECT count(*) FROM {table}")
        check(cur.fetchone(), (102,), "count")
        cur.execute(f"SELECT * FROM {table} WHERE id = %s", (1,))
        check(cur.fetchone(), FULL_ROW, "every type round trips")
        cur.execute(f"SELECT * FROM {table} WHERE id = %s", (500,))
        check(cur.fetchone(), (500, None, None, None, None, None, None), "NULLs")
        cur.execute(f"SELECT sum(qty) FROM {table} WHERE id BETWEEN %s AND %s", (2, 101))
        check(cur.fetchone(), (sum(range(2, 102)),), "sum")
        conn.commit()
        # DDL after prepared statements (psycopg then sends DEALLOCATE ALL).
        cur.execute(f"ALTER TABLE {table} ADD COLUMN extra TEXT")
        conn.commit()
        cur.execute(f"SELECT id, extra FROM {table} WHERE id = %s", (1,))
        check(cur.fetchone(), (1, None), "added column")
        conn.commit()
        # Autocommit too.
        conn.autocommit = True
        cur.execute(f"UPDATE {table} SET name = %s WHERE id = %s", ("grace", 2))
        check(cur.rowcount, 1, "UPDATE rowcount")
        cur.execute(f"DELETE FROM {table} WHERE id > %s", (100,))
        check(cur.rowcount, 2, "DELETE rowcount")
        # A transfer in a transaction: a second connection sees nothing until it commits.
        with psycopg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, dbname="omendb", autocommit=True) as other:
            def qty(id):
                return other.execute(f"SELECT qty FROM {table} WHERE id = %s", (id,)).fetchone()[0]

            with conn.transaction():
                cur.execute(f"UPDATE {table} SET qty = qty - 5 WHERE id = %s", (2,))
                cur.execute(f"UPDATE {table} SET qty = qty + 5 WHERE id = %s", (3,))
                cur.execute(f"SELECT qty FROM {table} WHERE id = %s", (2,))
                check(cur.fetchone(), (-3,), "the transaction reads its own write")
                check((qty(2), qty(3)), (2, 3), "uncommitted writes are invisible")
            check((qty(2), qty(3)), (-3, 8), "committed transfer")
            # A failing transaction applies nothing.
            try:
                with conn.transaction():
                    cur.execute(f"INSERT INTO {table} (id) VALUES (%s)", (600,))
                    cur.execute("SELECT 1 / 0")
                raise AssertionError("1 / 0 succeeded")
            except psycopg.errors.DivisionByZero:
                pass
            # Pipeline mode: one Sync, one implicit transaction.
            try:
                with conn.pipeline():
                    cur.execute(f"INSERT INTO {table} (id) VALUES (%s)", (601,))
                    cur.execute(f"INSERT INTO {table} (id) VALUES (%s)", (601,))
                raise AssertionError("a duplicate key in a pipeline succeeded")
            except psycopg.errors.UniqueViolation:
                pass
            check(
                other.execute(f"SELECT count(*) FROM {table} WHERE id >= 600").fetchone(),
                (0,),
                "nothing of the failed transactions",
            )
    print("psycopg: ok")


async def asyncpg_main():
    import asyncpg

    table = "py_asyncpg"
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database="omendb")
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} ({COLUMNS})")
        status = await conn.execute(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)", *FULL_ROW)
        check(status, "INSERT 0 1", "INSERT status")
        insert = await conn.prepare(f"INSERT INTO {table} (id, name, qty) VALUES ($1, $2, $3)")
        for i in range(2, 102):
            await insert.fetch(i, f"n{i}", i)
        await conn.execute(
            f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)", 500, None, None, None, None, None, None
        )
        try:
            await conn.fetch("SELECT * FROM no_such_table")
            raise AssertionError("a query of a missing table succeeded")
        except asyncpg.exceptions.UndefinedTableError:
            pass
        check(await conn.fetchval(f"SELECT count(*) FROM {table}"), 102, "count")
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 1)
        check(tuple(row), FULL_ROW, "every type round trips")
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 500)
        check(tuple(row), (500, None, None, None, None, None, None), "NULLs")
        async with conn.transaction():
            check(await conn.fetchval(f"SELECT name FROM {table} WHERE id = $1", 2), "n2", "in a transaction")
        # executemany is atomic: a failing row applies none of them.
        try:
            await conn.executemany(
                f"INSERT INTO {table} (id, name) VALUES ($1, $2)", [(600, "a"), (601, "b"), (600, "c")]
            )
            raise AssertionError("executemany with a duplicate key succeeded")
        except asyncpg.exceptions.UniqueViolationError:
            pass
        check(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id >= 600"), 0, "executemany applied nothing")
        # A transaction that raises is rolled back.
        try:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", 602)
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        check(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id >= 600"), 0, "rolled back")
    finally:
        await conn.close()
    print("asyncpg: ok")


def asyncpg_driver():
    asyncio.run(asyncpg_main())


def sqlalchemy_engine():
    import sqlalchemy

    return sqlalchemy.create_engine(
        f"postgresql+psycopg://{USER}:{PASSWORD}@{HOST}:{PORT}/omendb"
    )


def sqlalchemy_driver():
    from sqlalchemy import BigInteger, Column, MetaData, Table, Text, insert, select, text

    table = "py_sqlalchemy"
    engine = sqlalchemy_engine()
    with engine.connect() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.commit()
        conn.execute(text(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT)"))
        conn.commit()
    meta = MetaData()
    t = Table(table, meta, Column("id", BigInteger, primary_key=True), Column("name", Text))
    for i in range(1, 101):
        with engine.begin() as conn:
            conn.execute(insert(t).values(id=i, name=f"n{i}"))
    with engine.begin() as conn:
        conn.execute(insert(t).values(id=500, name=None))
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.name).where(t.c.id <= 3).order_by(t.c.id)).all()
        check([tuple(r) for r in rows], [(1, "n1"), (2, "n2"), (3, "n3")], "select")
        check(conn.execute(select(t.c.name).where(t.c.id == 500)).scalar(), None, "NULL")
        try:
            conn.execute(text("SELECT * FROM no_such_table"))
            raise AssertionError("a query of a missing table succeeded")
        except Exception as error:  # sqlalchemy.exc.ProgrammingError
            if "no_such_table" not in str(error):
                raise
            conn.rollback()
        check(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar(), 101, "count")
    # The ORM: a session that flushes several times, then rolls back, applies nothing; one that
    # commits applies every flush.
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        name: Mapped[str] = mapped_column(Text, nullable=True)

    with Session(engine) as session:
        session.add(Item(id=600, name="a"))
        session.flush()
        session.add(Item(id=601, name="b"))
        session.flush()
        check(session.get(Item, 600).name, "a", "the session reads its flushes")
        session.rollback()
    with Session(engine) as session:
        session.add(Item(id=602, name="c"))
        session.flush()
        session.get(Item, 50).name = "renamed"
        session.commit()
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT id FROM {table} WHERE id >= 600 ORDER BY id")).all()
        check([r[0] for r in rows], [602], "only the committed session's rows")
        check(conn.execute(select(t.c.name).where(t.c.id == 50)).scalar(), "renamed", "ORM update")
    print("sqlalchemy: ok")


def pandas_driver():
    import pandas

    engine = sqlalchemy_engine()
    frame = pandas.read_sql("SELECT id, name FROM py_sqlalchemy WHERE id <= 5 ORDER BY id", engine)
    check(list(frame["id"]), [1, 2, 3, 4, 5], "pandas ids")
    check(list(frame["name"]), ["n1", "n2", "n3", "n4", "n5"], "pandas names")
    print("pandas: ok")


DRIVERS = {
    "psycopg": psycopg_driver,
    "asyncpg": asyncpg_driver,
    "sqlalchemy": sqlalchemy_driver,
    "pandas": pandas_driver,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or DRIVERS:
        DRIVERS[name]()
