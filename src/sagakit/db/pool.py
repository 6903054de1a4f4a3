"""asyncpg pools with the settings every service uses, and the two ways in: connecting
(waiting for a server that is not up yet) and a transaction (telling a missing connection
apart from a failing statement). Database URLs are redacted in every message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sagakit.errors import ConfigError, DatabaseUnavailable, TransientError

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:
    Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection, pooled or not: what code running inside a transaction receives."""

log = logging.getLogger(__name__)

_NO_CONNECTION = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
"""What getting a connection (and its BEGIN) can fail with: none of it is the caller's
fault. ``OSError`` includes ``TimeoutError``: no pooled connection within the timeout.
``InternalClientError`` is what BEGIN gets on a connection the server has just hung up on,
before asyncpg has noticed ("cannot switch to state ...")."""


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool, *, timeout: float = 10.0) -> AsyncIterator[Connection]:
    """A pooled connection inside a transaction: committed if the body returns, rolled back
    if it raises.

    Failing to get there (no free connection within ``timeout`` seconds, the server down
    while the pool opens a connection, a stale connection failing its BEGIN) raises
    :class:`DatabaseUnavailable`, an outage. Anything the body raises passes unchanged, so
    a command timeout inside it stays a ``TimeoutError`` (retried, not waited out): the
    same exception type means two different things depending on the step.
    """
    try:
        conn = await pool.acquire(timeout=timeout)
    except _NO_CONNECTION as exc:
        raise DatabaseUnavailable(f"no database connection within {timeout:g} s: {exc!r}") from exc
    try:
        began = False
        try:
            async with conn.transaction():
                began = True
                yield conn
        except _NO_CONNECTION as exc:
            if began:
                raise
            raise DatabaseUnavailable(f"cannot begin a transaction: {exc!r}") from exc
    finally:
        await pool.release(conn)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing more to reset (asyncpg has rolled back an open transaction already)."""


async def connect_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 8,
    wait: float = 60.0,
    connect_timeout: float = 10.0,
    command_timeout: float = 30.0,
) -> asyncpg.Pool:
    """A pool on ``url``, waiting up to ``wait`` seconds for a server that is down or still
    starting, so that a service started before its database (one ``compose up``, a node
    reboot) comes up with it instead of exiting. Raises :class:`TransientError` if the
    server is still unreachable after ``wait`` seconds, and :class:`ConfigError` at once
    for what waiting cannot fix: a missing database, refused credentials, a malformed URL.

    A connection going back to the pool is not reset beyond rolling back a transaction
    left open (asyncpg's default also runs ``RESET ALL; SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *``, one more round trip per use): sagakit keeps no session state
    on pooled connections (its advisory locks are per transaction, its LISTEN has a
    connection of its own). A handler must not either: ``SET LOCAL``, not ``SET``.
    """
    started = time.monotonic()
    deadline = started + wait
    delay, attempts, last_log = 0.1, 0, -1e9
    while True:
        attempts += 1
        left = deadline - time.monotonic()
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=max(0.5, min(connect_timeout, left)),
                command_timeout=command_timeout,
                reset=_keep_session,
            )
        except asyncpg.InvalidCatalogNameError as exc:
            raise ConfigError(
                f"PostgreSQL at {redact(url)}: the database does not exist "
                f"({_scrub(str(exc), url)}); create it or fix the database URL"
            ) from exc
        except (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.SyntaxOrAccessError) as exc:
            raise ConfigError(
                f"PostgreSQL at {redact(url)} refused the connection: {_scrub(str(exc), url)}; "
                "check the user, password and grants in the database URL"
            ) from exc
        except ValueError as exc:
            # asyncpg's ClientConfigurationError among others; its text may quote the URL,
            # hence no chained cause.
            raise ConfigError(
                f"malformed database URL {redact(url)}: {_scrub(str(exc), url)}"
            ) from None
        except _NO_CONNECTION as exc:
            now = time.monotonic()
            why = _scrub(repr(exc), url)
            if now >= deadline:
                raise TransientError(
                    f"PostgreSQL at {redact(url)} still unreachable after {now - started:.1f} s "
                    f"({attempts} attempts): {why}"
                ) from exc
            if now - last_log >= 10:
                log.warning(
                    "PostgreSQL at %s unreachable (%s); waiting up to %.0f s more",
                    redact(url),
                    why,
                    deadline - now,
                )
                last_log = now
            await asyncio.sleep(min(delay, deadline - now))  # a last attempt at the deadline
            delay = min(delay * 2, 2.0)
            continue
        if attempts > 1:
            log.info(
                "PostgreSQL at %s reachable after %.1f s", redact(url), time.monotonic() - started
            )
        return pool


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^?#]*)@")
"""Scheme, then everything up to the last "@" before the query: a password may hold "@" or
"/" that its owner forgot to percent-encode, and it must not leak either way."""
_PASSWORD_PARAM = re.compile(r"(?P<key>(?:^|[?&\s])(?:ssl)?password=)(?P<secret>[^&#\s]*)", re.I)


def redact(url: str) -> str:
    """``url`` with its password (``user:password@``, ``?password=``) replaced by ``***``;
    a URL without one is returned unchanged. Everything else stays, for diagnosis."""
    match = _USERINFO.match(url)
    if match:
        user, _, password = match["userinfo"].partition(":")
        if password:
            url = f"{match['scheme']}{user}:***@{url[match.end() :]}"
    return _PASSWORD_PARAM.sub(lambda m: f"{m['key']}***", url)


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL's passwords replaced by
    ``***`` wherever they appear in it."""
    secrets = [m["secret"] for m in _PASSWORD_PARAM.finditer(url)]
    match = _USERINFO.match(url)
    if match:
        secrets.append(match["userinfo"].partition(":")[2])
    text = text.replace(url, redact(url))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # shorter ones would garble the text and guard little
            text = text.replace(secret, "***")
    return text
