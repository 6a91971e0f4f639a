"""The Database contract on both backends, and SQLite's one-writer/many-readers guarantees."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    select,
    text,
)
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from structlog.testing import capture_logs

from lockstep.db import Database, bulk_insert
from lockstep.exceptions import DatabaseUnavailableError
from lockstep.testing import count_statements, free_port

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(50), nullable=False),
)
children = Table(
    "children",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
)

MakeDatabase = Callable[..., Database]


async def create_tables(database: Database) -> None:
    async with database.writer() as session:
        connection = await session.connection()
        await connection.run_sync(metadata.create_all)


async def insert_item(database: Database, item_id: int, name: str = "x") -> None:
    async with database.writer() as session:
        await session.execute(sa_insert(items).values(id=item_id, name=name))


async def item_ids(database: Database) -> list[int]:
    async with database.reader() as session:
        return list(await session.scalars(select(items.c.id).order_by(items.c.id)))


# -- transactions ------------------------------------------------------------------------------


async def test_writer_commits_when_block_exits(
    database: Database, database_url: str, make_database: MakeDatabase
) -> None:
    await create_tables(database)

    await insert_item(database, 1)

    assert await item_ids(database) == [1]
    # Durable for anyone else, not just visible to this Database.
    assert await item_ids(make_database(database_url)) == [1]


async def test_writer_rolls_back_when_block_raises(database: Database) -> None:
    await create_tables(database)

    async def failing_write() -> None:
        async with database.writer() as session:
            await session.execute(sa_insert(items).values(id=1, name="doomed"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_write()

    assert await item_ids(database) == []
    # The writer (and on SQLite its lock) is free again.
    await insert_item(database, 2)
    assert await item_ids(database) == [2]


async def test_reader_proceeds_while_a_writer_transaction_is_open(database: Database) -> None:
    await create_tables(database)
    writer_open = asyncio.Event()
    release_writer = asyncio.Event()

    async def hold_writer() -> None:
        async with database.writer() as session:
            await session.execute(sa_insert(items).values(id=1, name="pending"))
            writer_open.set()
            await release_writer.wait()

    holder = asyncio.create_task(hold_writer())
    await writer_open.wait()
    try:
        assert await item_ids(database) == []  # did not wait; uncommitted row not visible
    finally:
        release_writer.set()
        await holder

    assert await item_ids(database) == [1]


async def test_writes_through_reader_are_refused(database: Database) -> None:
    await create_tables(database)

    async def write_through_reader() -> None:
        async with database.reader() as session:
            await session.execute(sa_insert(items).values(id=1, name="sneaky"))

    refusal = "readonly" if database.is_sqlite else "read-only transaction"
    with pytest.raises(DBAPIError, match=refusal):
        await write_through_reader()
    assert await item_ids(database) == []


async def test_postgres_reads_skip_begin_and_rollback(
    postgres_url: str, make_database: MakeDatabase
) -> None:
    """Each read statement is its own transaction (autocommit): between two statements of a
    reader session its connection is ``idle``, not ``idle in transaction``."""
    database = make_database(postgres_url)
    state = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")

    async def between_statements(pid: int) -> str:
        async with database.writer() as other:
            return str(await other.scalar(state, {"pid": pid}))

    async with database.reader() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        assert await between_statements(pid) == "idle"
    async with database.reader() as session:  # one snapshot, when asked for
        connection = await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ"}
        )
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        assert await between_statements(pid) == "idle in transaction"
        assert await connection.scalar(text("SHOW transaction_isolation")) == "repeatable read"


async def test_foreign_keys_are_enforced(database: Database) -> None:
    await create_tables(database)

    async def orphan_child() -> None:
        async with database.writer() as session:
            await session.execute(sa_insert(children).values(id=1, item_id=404))

    with pytest.raises(IntegrityError):
        await orphan_child()


@pytest.mark.parametrize("databases", [1, 2], ids=["one-database", "two-databases"])
async def test_concurrent_writers_all_succeed(
    sqlite_url: str, make_database: MakeDatabase, databases: int
) -> None:
    # One Database queues its writers on its own lock; two Databases on one file (two workers)
    # queue on SQLite's lock through BEGIN IMMEDIATE + busy_timeout. Neither may fail.
    pool = [make_database(sqlite_url) for _ in range(databases)]
    await create_tables(pool[0])
    writers = 20
    all_started = asyncio.Barrier(writers)

    async def write(n: int) -> None:
        database = pool[n % databases]
        await all_started.wait()
        async with database.writer() as session:
            # Read, then write: a read transaction that later wants to write is where SQLite
            # fails at once ("database is locked") unless writers start with BEGIN IMMEDIATE.
            before = await session.scalar(select(func.count()).select_from(items))
            await session.execute(sa_insert(items).values(id=n, name=f"after {before}"))

    await asyncio.gather(*(write(n) for n in range(writers)))

    assert await item_ids(pool[0]) == list(range(writers))


# -- SQLite connection setup -------------------------------------------------------------------


async def test_sqlite_pragmas(sqlite_url: str, make_database: MakeDatabase) -> None:
    database = make_database(sqlite_url, sqlite_busy_timeout_ms=4321)

    async with database.writer() as session:
        assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert await session.scalar(text("PRAGMA foreign_keys")) == 1
        assert await session.scalar(text("PRAGMA busy_timeout")) == 4321
        assert await session.scalar(text("PRAGMA query_only")) == 0
    async with database.reader() as session:
        assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert await session.scalar(text("PRAGMA foreign_keys")) == 1
        assert await session.scalar(text("PRAGMA query_only")) == 1


async def test_sqlite_connection_returned_mid_transaction_is_rolled_back(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    """The pool rolls back only what is still open (a committed or read-only connection
    comes back without a trip to the driver's thread); an abandoned transaction is undone
    before the connection is handed out again."""
    database = make_database(sqlite_url)
    await create_tables(database)
    async with database.writer_engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute("BEGIN IMMEDIATE")  # behind SQLAlchemy's back
        await driver.execute("INSERT INTO items (id, name) VALUES (1, 'abandoned')")
    await insert_item(database, 2)  # the next writer gets a clean connection
    assert await item_ids(database) == [2]


async def test_sqlite_reader_pool_is_separate(sqlite_url: str, make_database: MakeDatabase) -> None:
    database = make_database(sqlite_url, sqlite_read_pool_size=3)

    assert database.reader_engine is not database.writer_engine
    stats = database.pool_stats()
    assert stats["writer"]["size"] == 1
    assert stats["reader"]["size"] == 3


# Runs in a second process: proves the parent holds the write lock (refused at once without a
# busy timeout), then writes with a busy timeout and must queue until the parent commits.
_CHILD_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute("BEGIN IMMEDIATE")
except sqlite3.OperationalError as exc:
    print("contended:", exc, flush=True)
else:
    print("not contended", flush=True)
    sys.exit(3)
conn.execute("PRAGMA busy_timeout = 60000")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO items (id, name) VALUES (2, 'child')")
conn.execute("COMMIT")
print("committed", flush=True)
"""

# Runs in a second process: takes the write lock and holds it until told to commit.
_CHILD_LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO items (id, name) VALUES (1, 'child')")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("committed", flush=True)
"""


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite+aiosqlite:///")


@contextlib.asynccontextmanager
async def child_process(script: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``script`` in another Python process with piped stdio; kill it if left running.

    The timeout only turns a hang (a broken guarantee) into a failure; nothing is timed.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            yield child
    finally:
        if child.returncode is None:
            child.kill()
            await child.communicate()


async def test_other_process_queues_behind_our_writer(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(sqlite_url)
    await create_tables(database)

    async with child_process(_CHILD_WRITER, _sqlite_path(sqlite_url)) as child:
        assert child.stdout is not None
        async with database.writer() as session:
            await session.execute(sa_insert(items).values(id=1, name="parent"))
            first_line = await child.stdout.readline()
            assert first_line.startswith(b"contended: database is locked"), first_line
        # Our commit lets the child through.
        out, err = await child.communicate()

    assert child.returncode == 0, err.decode()
    assert out.strip() == b"committed"
    assert await item_ids(database) == [1, 2]


async def test_our_writer_queues_behind_other_process(
    sqlite_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(sqlite_url, sqlite_busy_timeout_ms=60_000)
    await create_tables(database)
    begin_sent = asyncio.Event()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            begin_sent.set()

    event.listen(database.writer_engine.sync_engine, "before_cursor_execute", on_execute)

    async with child_process(_CHILD_LOCK_HOLDER, _sqlite_path(sqlite_url)) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        assert await child.stdout.readline() == b"locked\n"

        writer = asyncio.create_task(insert_item(database, 2, "parent"))
        await begin_sent.wait()  # our transaction is on its way into the held lock
        assert not writer.done()
        child.stdin.write(b"commit\n")
        await child.stdin.drain()
        await writer
        out, err = await child.communicate()

    assert child.returncode == 0, err.decode()
    assert out.strip() == b"committed"
    assert await item_ids(database) == [1, 2]


# -- PostgreSQL connection setup ---------------------------------------------------------------


async def test_postgres_engine_takes_pool_and_timeouts_from_settings(
    postgres_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(
        postgres_url,
        db_pool_size=3,
        db_max_overflow=2,
        db_pool_timeout=7.5,
        db_pool_recycle=99,
        db_pool_pre_ping=False,
        db_statement_timeout_ms=1234,
    )

    async with database.reader() as session:
        assert await session.scalar(text("SHOW statement_timeout")) == "1234ms"
        assert await session.scalar(text("SHOW application_name")) == "lockstep"
    assert database.reader_engine is not database.writer_engine
    for engine in (database.writer_engine, database.reader_engine):
        pool: Any = engine.pool
        assert pool.size() == 3
        assert pool._max_overflow == 2
        assert pool._timeout == 7.5
        assert pool._recycle == 99
        assert pool._pre_ping is False
    assert set(database.pool_stats()) == {"writer", "reader"}


async def test_postgres_statement_timeout_cancels_long_statements(
    postgres_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(postgres_url, db_statement_timeout_ms=50)

    async def long_statement() -> None:
        async with database.writer() as session:
            await session.execute(text("SELECT pg_sleep(60)"))

    with pytest.raises(DBAPIError, match="statement timeout"):
        await long_statement()


async def test_postgres_statement_timeout_zero_means_none(
    postgres_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(postgres_url, db_statement_timeout_ms=0)

    async with database.reader() as session:
        assert await session.scalar(text("SHOW statement_timeout")) == "0"


# -- ping ----------------------------------------------------------------------------------------


async def test_ping_succeeds_on_a_live_database(database: Database) -> None:
    await database.ping()


async def test_ping_raises_database_unavailable_for_a_closed_port(
    make_database: MakeDatabase,
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    database = make_database(url, db_connect_timeout=10)

    with pytest.raises(DatabaseUnavailableError, match="did not answer") as raised:
        await database.ping()

    assert raised.value.status_code == 503
    assert raised.value.__cause__ is not None


# -- instrumentation -----------------------------------------------------------------------------


async def test_slow_query_log_records_statement_but_not_parameters(
    database_url: str, make_database: MakeDatabase
) -> None:
    database = make_database(database_url, slow_query_ms=0.000_001)
    secret = "hunter2-must-not-be-logged"

    with capture_logs() as logs:
        async with database.reader() as session:
            await session.execute(text("SELECT :secret AS value"), {"secret": secret})

    slow = [entry for entry in logs if entry["event"] == "slow_query"]
    assert any("AS value" in entry["statement"] for entry in slow), logs
    assert all(entry["log_level"] == "warning" for entry in slow)
    assert all(entry["duration_ms"] >= 0 for entry in slow)
    assert secret not in repr(logs)


async def test_slow_query_log_sees_bulk_inserts_past_sqlalchemy(
    database_url: str, make_database: MakeDatabase
) -> None:
    # bulk_insert reaches the driver directly (executemany on SQLite, COPY on asyncpg).
    database = make_database(database_url, slow_query_ms=0.000_001)
    table = Table("bulk_logged", MetaData(), Column("id", Integer, primary_key=True))
    async with database.writer_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)

    with capture_logs() as logs:
        async with database.writer() as session:
            await bulk_insert(session, table, [{"id": 1}, {"id": 2}])

    slow = [entry for entry in logs if entry["event"] == "slow_query"]
    assert any("bulk_logged" in e["statement"] and e["executemany"] for e in slow), logs


async def test_slow_query_log_keeps_no_state_for_failed_statements(
    database_url: str, make_database: MakeDatabase
) -> None:
    # Regression: each failed statement used to leave its start time on the pooled connection.
    database = make_database(database_url, slow_query_ms=1000, sqlite_read_pool_size=1)

    async def failing_read() -> None:
        async with database.reader() as session:
            await session.execute(text("SELECT * FROM no_such_table"))

    for _ in range(3):
        with pytest.raises(DBAPIError):
            await failing_read()

    async with database.reader_engine.connect() as connection:
        assert connection.info.get("lockstep_query_started", []) == []


async def test_slow_query_log_is_off_at_zero(database: Database) -> None:
    with capture_logs() as logs:
        async with database.reader() as session:
            await session.execute(text("SELECT 1"))

    assert [entry for entry in logs if entry["event"] == "slow_query"] == []


async def test_count_statements_counts_statements_not_transaction_control(
    database: Database,
) -> None:
    await create_tables(database)

    with count_statements(database.writer_engine, database.reader_engine) as counter:
        async with database.writer() as session:
            await session.execute(sa_insert(items).values(id=1, name="a"))
            await session.execute(sa_insert(items).values(id=2, name="b"))
        assert await item_ids(database) == [1, 2]

    assert counter.count == 3, counter.statements
    assert [s.split()[0].upper() for s in counter.statements] == ["INSERT", "INSERT", "SELECT"]
    # Nothing is counted once the block has exited.
    await insert_item(database, 3)
    assert counter.count == 3
