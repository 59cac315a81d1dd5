"""SQLite without the thread: aiosqlite's interface, run on the event loop's own thread.

aiosqlite sends every call (cursor, execute, fetch, close, commit) to a thread of its own
and back: a queue, a thread switch and a loop wake-up per call, about ten per request. A
SQLite statement here takes microseconds, so the round trips cost far more than the work;
and while a write transaction waits on them, every other request runs in between and the
write lock is held the longer (under load, submits queued behind each other for ~15 ms
each). Run inline, a transaction runs start to end without yielding.

The cost of inline: a statement blocks the loop while it runs. That is microseconds for
the indexed reads and writes Shengtu makes; when another *process* holds SQLite's write
lock, ``BEGIN IMMEDIATE`` waits in SQLite's busy handler on this thread (up to
``busy_timeout``). One process owns the embedded database, so that wait only happens
against a CLI command or a second worker process, briefly.

Only what SQLAlchemy's aiosqlite dialect calls is here.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()


class _InlineQueue:
    """Stands in for aiosqlite's request queue: SQLAlchemy sets the isolation level
    through it (``(future, function)``); the function runs at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the waiting caller, as aiosqlite does
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter uses of ``aiosqlite.Connection``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # aiosqlite's "still open" flag
        self._tx = _InlineQueue(conn)

    @property
    def raw(self) -> sqlite3.Connection:
        """The connection itself, for statements compiled once (``shengtu.db.run``)."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        # Not a coroutine: SQLAlchemy enters it (``async with``), as aiosqlite's.
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return InlineCursor(self._conn.execute(sql, parameters))

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def open_sqlite(path: str, timeout: float) -> sqlite3.Connection:
    """A connection in autocommit (BEGIN is ours to issue), for use on the loop's thread."""
    # check_same_thread=False: SQLAlchemy's pool may close a connection from the thread
    # that runs garbage collection; every use is on the loop's thread.
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)


def inline_connector(path: str, timeout: float) -> Callable[[], Awaitable[InlineConnection]]:
    """``create_async_engine(async_creator=…)`` for the database file at ``path``."""

    async def connect() -> InlineConnection:
        return InlineConnection(open_sqlite(path, timeout))

    return connect
