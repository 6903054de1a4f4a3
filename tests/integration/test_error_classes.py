"""The classification, case by case, against what a real PostgreSQL server does.

Each case makes the server fail the way production would (a race between two replicas, a
deadlock, a terminated backend, a role out of connections...), catches what asyncpg really
raises, and classifies it. SQLSTATEs that cannot practically be caused on demand (a crash,
a full disk) are raised by the server itself with ``RAISE ... USING ERRCODE``, so the
exception is still the one asyncpg builds from the server's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sagakit.config import database_url
from sagakit.db import DatabaseUnavailable, connect_pool, transaction
from sagakit.devstack import StackInfo, postgres
from sagakit.devstack.processes import free_port
from sagakit.errors import ConfigError, TransientError
from sagakit.messaging.retry import Disposition, classify
from tests.conftest import _test_root

OUTAGE, RETRY, PERMANENT = Disposition.OUTAGE, Disposition.RETRY, Disposition.PERMANENT

SCHEMA = """
CREATE TABLE parent (id bigint PRIMARY KEY);
CREATE TABLE child (
    id bigint PRIMARY KEY,
    parent bigint REFERENCES parent,
    qty int NOT NULL CHECK (qty > 0)
);
CREATE TABLE booking (during int8range, EXCLUDE USING gist (during WITH &&));
CREATE TABLE counter (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
"""

LIMITED = f"limited_{uuid.uuid4().hex[:10]}"
"""A non-superuser role that may not connect at all (superusers bypass connection limits)."""


@pytest.fixture(scope="module")
async def db(stack: StackInfo) -> AsyncIterator[str]:
    """URL of a database with the tables the cases need, and the LIMITED role."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.execute(f"CREATE ROLE {LIMITED} LOGIN PASSWORD 'limited-pw' CONNECTION LIMIT 0")
    url = database_url(stack.database_url, name)
    conn = await asyncpg.connect(url)
    await conn.execute(SCHEMA)
    await conn.close()
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {LIMITED}")
        await admin.close()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        conn.terminate()


def _key() -> int:
    return uuid.uuid4().int >> 66


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


# -- cases caused the way production causes them ------------------------------------------
async def unique_violation(url: str) -> None:
    async with connected(url) as conn:
        key = _key()
        await conn.execute("INSERT INTO parent VALUES ($1)", key)
        await conn.execute("INSERT INTO parent VALUES ($1)", key)


async def unique_race_between_replicas(url: str) -> None:
    """Two replicas insert the same key at once: the second waits for the first to commit,
    then fails. Its retry finds the row and does nothing: it must not be dead-lettered."""
    async with connected(url) as a, connected(url) as b:
        key = _key()
        async with a.transaction():
            await a.execute("INSERT INTO parent VALUES ($1)", key)
            second = asyncio.create_task(b.execute("INSERT INTO parent VALUES ($1)", key))
            await asyncio.sleep(0.2)
            assert not second.done()  # blocked on the first one's uncommitted row
        await second


async def exclusion_violation(url: str) -> None:
    async with connected(url) as conn:
        start = _key()
        await conn.execute(
            "INSERT INTO booking VALUES (int8range($1::bigint, $1::bigint + 10))", start
        )
        await conn.execute(
            "INSERT INTO booking VALUES (int8range($1::bigint + 5, $1::bigint + 15))", start
        )


async def foreign_key_violation(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("INSERT INTO child VALUES ($1, -1, 1)", _key())


async def check_violation(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("INSERT INTO child VALUES ($1, NULL, 0)", _key())


async def not_null_violation(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("INSERT INTO child VALUES ($1, NULL, NULL)", _key())


async def nul_in_text(url: str) -> None:
    async with connected(url) as conn:
        await conn.fetchval("SELECT $1::text", "a\x00b")


async def invalid_text_representation(url: str) -> None:
    async with connected(url) as conn:
        await conn.fetchval("SELECT 'abc'::int")


async def division_by_zero(url: str) -> None:
    async with connected(url) as conn:
        await conn.fetchval("SELECT 1 / (random() * 0)::int")


async def syntax_error(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("SELEC 1")


async def undefined_table(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("SELECT * FROM no_such_table")


async def insufficient_privilege(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute(f"SET ROLE {LIMITED}")
        await conn.fetch("SELECT * FROM parent")


async def deadlock(url: str) -> None:
    async with connected(url) as a, connected(url) as b:
        k1, k2 = _key(), _key()
        await a.execute("INSERT INTO counter (id) VALUES ($1), ($2)", k1, k2)
        for conn in (a, b):
            await conn.execute("SET deadlock_timeout = '50ms'")
            await conn.execute("BEGIN")
        await a.execute("UPDATE counter SET n = n + 1 WHERE id = $1", k1)
        await b.execute("UPDATE counter SET n = n + 1 WHERE id = $1", k2)
        results = await asyncio.gather(
            a.execute("UPDATE counter SET n = n + 1 WHERE id = $1", k2),
            b.execute("UPDATE counter SET n = n + 1 WHERE id = $1", k1),
            return_exceptions=True,
        )
        for conn in (a, b):
            await conn.execute("ROLLBACK")
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results  # one victim, the other one went through
        raise errors[0]


async def serialization_failure(url: str) -> None:
    async with connected(url) as a, connected(url) as b:
        key = _key()
        await a.execute("INSERT INTO counter (id) VALUES ($1)", key)
        for conn in (a, b):
            await conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            await conn.fetchval("SELECT n FROM counter WHERE id = $1", key)
        await b.execute("UPDATE counter SET n = n + 1 WHERE id = $1", key)
        await b.execute("COMMIT")
        try:
            await a.execute("UPDATE counter SET n = n + 1 WHERE id = $1", key)
        finally:
            await a.execute("ROLLBACK")


async def lock_not_available(url: str) -> None:
    async with connected(url) as a, connected(url) as b:
        key = _key()
        await a.execute("INSERT INTO counter (id) VALUES ($1)", key)
        async with a.transaction():
            await a.execute("SELECT * FROM counter WHERE id = $1 FOR UPDATE", key)
            await b.execute("SELECT * FROM counter WHERE id = $1 FOR UPDATE NOWAIT", key)


async def statement_timeout(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute("SET statement_timeout = '100ms'")
        await conn.execute("SELECT pg_sleep(5)")


async def command_timeout(url: str) -> None:
    """asyncpg's own per-command timeout: the server is fine, the statement was slow."""
    async with connected(url) as conn:
        try:
            await conn.execute("SELECT pg_sleep(2)", timeout=0.2)
        finally:
            assert await conn.fetchval("SELECT 1") == 1  # the connection is still good


async def read_only_transaction(url: str) -> None:
    """What a write gets from a standby after a failover."""
    async with connected(url) as conn, conn.transaction(readonly=True):
        await conn.execute("INSERT INTO parent VALUES ($1)", _key())


async def terminated_backend(url: str) -> None:
    """pg_terminate_backend (or a fast shutdown) while a statement runs."""
    async with connected(url) as victim, connected(url) as admin:
        running = asyncio.create_task(victim.execute("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        await admin.fetchval("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        try:
            await running
        except asyncpg.ConnectionDoesNotExistError as exc:
            # asyncpg reports the lost connection, caused by the server's 57P01.
            assert isinstance(exc.__cause__, asyncpg.AdminShutdownError)
            assert exc.__cause__.sqlstate == "57P01"
            assert classify(exc.__cause__) is OUTAGE
            raise


async def connection_closed_under_us(url: str) -> None:
    """The same connection used again after the server terminated it."""
    async with connected(url) as victim, connected(url) as admin:
        await admin.fetchval("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        await asyncio.sleep(0.3)
        assert victim.is_closed()  # asyncpg saw the server hang up
        await victim.fetchval("SELECT 1")


async def too_many_connections_for_role(url: str) -> None:
    conn = await asyncpg.connect(_with_user(url, LIMITED, "limited-pw"))
    await conn.close()


async def database_missing(url: str) -> None:
    conn = await asyncpg.connect(database_url(url, "no_such_database"))
    await conn.close()


async def nothing_listening(url: str) -> None:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    await conn.close()


async def connection_settings_rejected(url: str) -> None:
    conn = await asyncpg.connect(f"{url}?sslmode=sometimes")
    await conn.close()


async def closed_connection(url: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.close()
    await conn.fetchval("SELECT 1")


async def concurrent_use_of_one_connection(url: str) -> None:
    """A handler bug (gather on ctx.tx): not an outage, it must not be waited on for ever."""
    async with connected(url) as conn:
        await asyncio.gather(conn.fetchval("SELECT pg_sleep(0.2)"), conn.fetchval("SELECT 1"))


async def argument_not_encodable(url: str) -> None:
    """Refused by asyncpg before it reaches the server, as a 22000 data exception."""
    async with connected(url) as conn:
        await conn.fetchval("SELECT $1::int", "abc")


Case = tuple[Callable[[str], Awaitable[None]], type[BaseException], str | None, Disposition]

NATURAL: list[Case] = [
    (unique_violation, asyncpg.UniqueViolationError, "23505", RETRY),
    (unique_race_between_replicas, asyncpg.UniqueViolationError, "23505", RETRY),
    (exclusion_violation, asyncpg.ExclusionViolationError, "23P01", RETRY),
    (foreign_key_violation, asyncpg.ForeignKeyViolationError, "23503", PERMANENT),
    (check_violation, asyncpg.CheckViolationError, "23514", PERMANENT),
    (not_null_violation, asyncpg.NotNullViolationError, "23502", PERMANENT),
    (nul_in_text, asyncpg.CharacterNotInRepertoireError, "22021", PERMANENT),
    (invalid_text_representation, asyncpg.InvalidTextRepresentationError, "22P02", PERMANENT),
    (division_by_zero, asyncpg.DivisionByZeroError, "22012", PERMANENT),
    (syntax_error, asyncpg.PostgresSyntaxError, "42601", PERMANENT),
    (undefined_table, asyncpg.UndefinedTableError, "42P01", PERMANENT),
    (insufficient_privilege, asyncpg.InsufficientPrivilegeError, "42501", PERMANENT),
    (deadlock, asyncpg.DeadlockDetectedError, "40P01", RETRY),
    (serialization_failure, asyncpg.SerializationError, "40001", RETRY),
    (lock_not_available, asyncpg.LockNotAvailableError, "55P03", RETRY),
    (statement_timeout, asyncpg.QueryCanceledError, "57014", OUTAGE),
    (command_timeout, TimeoutError, None, RETRY),
    (read_only_transaction, asyncpg.ReadOnlySQLTransactionError, "25006", OUTAGE),
    (terminated_backend, asyncpg.ConnectionDoesNotExistError, "08003", OUTAGE),
    (connection_closed_under_us, asyncpg.InterfaceError, None, OUTAGE),
    (too_many_connections_for_role, asyncpg.TooManyConnectionsError, "53300", OUTAGE),
    (database_missing, asyncpg.InvalidCatalogNameError, "3D000", OUTAGE),
    (nothing_listening, OSError, None, OUTAGE),
    (connection_settings_rejected, asyncpg.ClientConfigurationError, None, OUTAGE),
    (closed_connection, asyncpg.InterfaceError, None, OUTAGE),
    (concurrent_use_of_one_connection, asyncpg.InterfaceError, None, RETRY),
    (argument_not_encodable, asyncpg.DataError, "22000", PERMANENT),
]


@pytest.mark.parametrize(
    ("produce", "kind", "sqlstate", "expected"), NATURAL, ids=[c[0].__name__ for c in NATURAL]
)
async def test_real_failure(
    db: str,
    produce: Callable[[str], Awaitable[None]],
    kind: type[BaseException],
    sqlstate: str | None,
    expected: Disposition,
) -> None:
    with pytest.raises(kind) as caught:
        await produce(db)
    exc = caught.value
    if sqlstate is not None:
        assert getattr(exc, "sqlstate", None) == sqlstate
    assert classify(exc) is expected, repr(exc)


RAISED: list[tuple[str, type[asyncpg.PostgresError], Disposition]] = [
    ("57P01", asyncpg.AdminShutdownError, OUTAGE),
    ("57P02", asyncpg.CrashShutdownError, OUTAGE),
    ("57P03", asyncpg.CannotConnectNowError, OUTAGE),
    ("57P04", asyncpg.DatabaseDroppedError, OUTAGE),
    ("57P05", asyncpg.IdleSessionTimeoutError, OUTAGE),
    ("53000", asyncpg.InsufficientResourcesError, OUTAGE),
    ("53100", asyncpg.DiskFullError, OUTAGE),
    ("53200", asyncpg.OutOfMemoryError, OUTAGE),
    ("53400", asyncpg.ConfigurationLimitExceededError, OUTAGE),
    ("08000", asyncpg.PostgresConnectionError, OUTAGE),
    ("08003", asyncpg.ConnectionDoesNotExistError, OUTAGE),
    ("08006", asyncpg.ConnectionFailureError, OUTAGE),
    ("28000", asyncpg.InvalidAuthorizationSpecificationError, OUTAGE),
    ("28P01", asyncpg.InvalidPasswordError, OUTAGE),
    ("58000", asyncpg.PostgresSystemError, OUTAGE),
    ("58030", asyncpg.PostgresIOError, OUTAGE),
    ("40000", asyncpg.TransactionRollbackError, RETRY),
    ("40003", asyncpg.StatementCompletionUnknownError, RETRY),
    ("55006", asyncpg.ObjectInUseError, RETRY),
    ("XX000", asyncpg.InternalServerError, RETRY),
    ("XX001", asyncpg.DataCorruptedError, RETRY),
    ("P0001", asyncpg.RaiseError, RETRY),
    ("0A000", asyncpg.FeatureNotSupportedError, RETRY),
    ("ZZ999", asyncpg.exceptions.UnknownPostgresError, RETRY),
    ("23000", asyncpg.IntegrityConstraintViolationError, PERMANENT),
    ("23001", asyncpg.RestrictViolationError, PERMANENT),
    ("22001", asyncpg.StringDataRightTruncationError, PERMANENT),
    ("54000", asyncpg.ProgramLimitExceededError, PERMANENT),
    ("54001", asyncpg.StatementTooComplexError, PERMANENT),
]


@pytest.mark.parametrize(("sqlstate", "kind", "expected"), RAISED, ids=[c[0] for c in RAISED])
async def test_raised_by_the_server(
    db: str, sqlstate: str, kind: type[asyncpg.PostgresError], expected: Disposition
) -> None:
    async with connected(db) as conn:
        with pytest.raises(kind) as caught:
            await conn.execute(
                f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$"
            )
    assert type(caught.value) is kind
    assert caught.value.sqlstate == sqlstate
    assert classify(caught.value) is expected


# -- transaction(): an outage at the acquire step, the body's failures untouched ----------
@contextlib.asynccontextmanager
async def one_connection_pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def test_transaction_commits_and_rolls_back(db: str) -> None:
    kept, dropped = _key(), _key()
    async with one_connection_pool(db) as pool:
        async with transaction(pool) as conn:
            await conn.execute("INSERT INTO parent VALUES ($1)", kept)
        with pytest.raises(asyncpg.UniqueViolationError):  # passes through unchanged
            async with transaction(pool) as conn:
                await conn.execute("INSERT INTO parent VALUES ($1)", dropped)
                await conn.execute("INSERT INTO parent VALUES ($1)", kept)
        found = await pool.fetch("SELECT id FROM parent WHERE id = ANY($1)", [kept, dropped])
    assert [r["id"] for r in found] == [kept]


async def test_transaction_no_free_connection_is_an_outage(db: str) -> None:
    async with one_connection_pool(db) as pool, pool.acquire():
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as caught:
            async with transaction(pool, timeout=0.2):
                raise AssertionError("no connection was free")
        assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert classify(caught.value) is OUTAGE


async def test_transaction_command_timeout_is_not_an_outage(db: str) -> None:
    key = _key()
    async with one_connection_pool(db) as pool:
        with pytest.raises(TimeoutError) as caught:
            async with transaction(pool) as conn:
                await conn.execute("INSERT INTO parent VALUES ($1)", key)
                await conn.execute("SELECT pg_sleep(2)", timeout=0.2)
        assert not isinstance(caught.value, DatabaseUnavailable)
        assert classify(caught.value) is RETRY
        async with transaction(pool, timeout=2) as conn:  # the pool recovered its connection
            assert await conn.fetchval("SELECT count(*) FROM parent WHERE id = $1", key) == 0


async def test_transaction_server_unreachable_is_an_outage() -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/postgres"
    pool = await asyncpg.create_pool(url, min_size=0, max_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with transaction(pool, timeout=2):
                raise AssertionError("connected to nothing")
    finally:
        await pool.close()
    assert isinstance(caught.value.__cause__, OSError)
    assert classify(caught.value) is OUTAGE
    assert "s3cret" not in str(caught.value)


async def test_transaction_replaces_a_connection_the_server_closed(db: str) -> None:
    async with one_connection_pool(db) as pool:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
        async with connected(db) as admin:
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.3)
        async with transaction(pool) as conn:
            assert conn.get_server_pid() != pid


async def test_transaction_begin_on_a_dead_connection_is_an_outage(db: str) -> None:
    """Terminated and used at once, before asyncpg may have seen the hang-up: either the
    pool replaces the connection or BEGIN fails; never a raw error charged to the message."""
    outcomes: list[BaseException | None] = []
    began = 0
    async with one_connection_pool(db) as pool, connected(db) as admin:
        for _ in range(5):
            async with pool.acquire() as conn:
                pid = conn.get_server_pid()
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            outcome: BaseException | None = None
            try:
                async with transaction(pool) as conn:
                    began = conn.get_server_pid()
            except DatabaseUnavailable as exc:
                outcome = exc
            except Exception as exc:  # began on a good connection, then COMMIT met the hang-up
                assert began == pid and classify(exc) is not PERMANENT, repr(exc)
                outcome = exc
            outcomes.append(outcome)
        assert all(o is None or classify(o) is not PERMANENT for o in outcomes), outcomes
        async with transaction(pool) as conn:  # and the pool recovers
            assert await conn.fetchval("SELECT 1") == 1


# -- connect_pool(): waits for a server that is not up yet, bounded ------------------------
async def test_connect_pool_waits_for_a_server_starting_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = Path(tempfile.mkdtemp(prefix="late-", dir=_test_root())) / "pg"
    port = free_port()
    await asyncio.to_thread(postgres.start, data, port)  # initdb now, so the start is quick
    await asyncio.to_thread(postgres.stop, data)
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/postgres"

    async def start_later() -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(postgres.start, data, port)

    try:
        caplog.set_level(logging.INFO, logger="sagakit.db.pool")
        starter = asyncio.create_task(start_later())
        began = time.monotonic()
        pool = await connect_pool(url, min_size=1, max_size=2, wait=60)
        await starter
        try:
            assert await pool.fetchval("SELECT 1") == 1
        finally:
            await pool.close()
        assert time.monotonic() - began >= 2
        warnings = [
            r
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name.startswith("sagakit")
        ]  # (asyncpg's pool may warn of its own retries too, as many times as it likes)
        assert 1 <= len(warnings) <= 2  # logged, not once per attempt
        assert "unreachable" in caplog.text and "reachable after" in caplog.text
        assert "postgres:***@127.0.0.1" in caplog.text
        assert "s3cret" not in caplog.text
    finally:
        await asyncio.to_thread(postgres.wipe, data)


async def test_connect_pool_gives_up_after_its_wait(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/app?password=s3cret-pw"
    began = time.monotonic()
    with pytest.raises(TransientError) as caught:
        await connect_pool(url, wait=1.0)
    assert 0.5 <= time.monotonic() - began < 5
    message = str(caught.value)
    assert "unreachable" in message and "app:***@127.0.0.1" in message
    assert "s3cret" not in message and "s3cret" not in caplog.text


async def test_connect_pool_missing_database_is_a_config_error(stack: StackInfo) -> None:
    server = urlsplit(stack.database_url)
    url = _with_user(database_url(stack.database_url, "no_such_database"), "postgres", "s3cret")
    assert server.hostname and server.hostname in url
    began = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        await connect_pool(url, wait=30)
    assert time.monotonic() - began < 5  # not waited on: waiting cannot create it
    assert "does not exist" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_connect_pool_malformed_url_is_a_config_error(stack: StackInfo) -> None:
    url = _with_user(stack.database_url, "postgres", "s3cret") + "?sslmode=sometimes"
    with pytest.raises(ConfigError) as caught:
        await connect_pool(url, wait=30)
    assert "malformed" in str(caught.value) and "s3cret" not in str(caught.value)
