"""Engine, sessions and the one transaction helper.

``Database.write()`` is the unit of work: one transaction, committed on success and
rolled back on any exception. On SQLite it starts with ``BEGIN IMMEDIATE`` (so a write
transaction never fails half-way on a lock upgrade) behind an in-process lock (so the
writers of one process queue fairly instead of spinning in SQLite's busy handler).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVarTuple, cast

from sqlalchemy import DateTime, MetaData, Select, event, make_url, text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from shengtu.sqlite_inline import inline_connector, open_sqlite

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_Row = TypeVarTuple("_Row")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo: what every database column here stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class UtcDateTime(TypeDecorator[datetime]):
    """A naive-UTC timestamp with microseconds on every database (MySQL needs fsp=6)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value


SQLITE_TIMEOUT = 30  # seconds in SQLite's busy handler before "database is locked"


def _sqlite_path(url: str) -> str:
    return make_url(url).database or ":memory:"


def _sqlite_engine(url: str, begin: str | None, pool_size: int) -> AsyncEngine:
    """``begin=None``: autocommit reads. Each statement reads a consistent snapshot in
    WAL mode, and skipping BEGIN/ROLLBACK saves two round trips per session.

    Statements run on the loop's own thread (:mod:`shengtu.sqlite_inline`)."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        async_creator=inline_connector(_sqlite_path(url), SQLITE_TIMEOUT),
        pool_reset_on_return="rollback" if begin else None,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        # Take BEGIN away from the driver so that we choose DEFERRED or IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=30000",
            "foreign_keys=ON",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    if begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    return engine


def _connect_errors_as_oserror(engine: AsyncEngine) -> None:
    """asyncmy on uvloop raises RuntimeError ("Transport does not expose socket instance")
    when the server or a proxy closes the connection during the handshake; that is a
    connection failure, and is reported as one (503, like the others)."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Dialect, _: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.loaded_dbapi.connect(*cargs, **cparams)
        except RuntimeError as exc:
            raise ConnectionResetError(f"database connection lost during handshake: {exc}") from exc


@dataclass(frozen=True)
class _CompiledRead:
    sql: str
    binds: tuple[str, ...]
    defaults: Mapping[str, Any]
    # (column index, result processor), only for the columns that have one: most have none
    # (ints, strings), and a pass over every column cost more than the conversions.
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]


class SqliteRowReader:
    """One-row reads on SQLite by statements compiled once: the hot GETs' path.

    A connection of its own in autocommit, run on the loop's thread like
    :mod:`shengtu.sqlite_inline`. In WAL mode a read never waits on a writer, and each
    statement sees the last commit. The columns' own result processors convert the row, so
    the values are those the ORM would load (datetimes, JSON, booleans).
    """

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None
        self._compiled: dict[Select[*tuple[Any, ...]], _CompiledRead] = {}

    def _compile(self, stmt: Select[*tuple[Any, ...]]) -> _CompiledRead:
        compiled = stmt.compile(dialect=self._dialect)
        processors = []
        for index, column in enumerate(stmt.selected_columns):
            impl = column.type.dialect_impl(self._dialect)
            processor = impl.result_processor(self._dialect, None)
            if processor is not None:
                processors.append((index, processor))
        binds = tuple(compiled.positiontup or ())
        for name, bind_processor in compiled._bind_processors.items():
            if bind_processor is not None:
                # Only plain ints and strings are bound here; anything else needs processing.
                raise TypeError(f"bind parameter {name} needs a processor")
        defaults = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        return _CompiledRead(compiled.string, binds, defaults, tuple(processors))

    def first(
        self, stmt: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        read = self._compiled.get(stmt)
        if read is None:
            read = self._compiled[stmt] = self._compile(stmt)
        if self._conn is None:
            self._conn = open_sqlite(self._path, SQLITE_TIMEOUT)
            self._conn.execute("PRAGMA query_only=ON")
        row = self._conn.execute(
            read.sql, [params[n] if n in params else read.defaults[n] for n in read.binds]
        ).fetchone()
        if row is None:
            return None
        if not read.processors:
            return tuple(row)
        values = list(row)
        for index, processor in read.processors:
            if values[index] is not None:
                values[index] = processor(values[index])
        return tuple(values)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@asynccontextmanager
async def _inline_session(
    maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session closed in place, for SQLite's inline connections.

    ``async with session`` closes in a task of its own, so that a cancellation cannot cut
    the close short, and waiting on that task costs passes of the event loop. Under load
    a pass is 10-40 ms, and a writer held the write lock across them: writers queued for
    seconds, and a worker tracking hundreds of tasks fell behind while the API was busy.
    Inline, closing runs no I/O and never yields, so no cancellation can land inside it.
    """
    session = maker()
    try:
        yield session
    finally:
        await session.close()


class Database:
    def __init__(self, url: str, pool_size: int = 10, overflow: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE", pool_size=2)
            self.read_engine = _sqlite_engine(url, None, pool_size=pool_size)
            self._rows: SqliteRowReader | None = SqliteRowReader(
                _sqlite_path(url), self.engine.dialect
            )
        else:
            options: dict[str, Any] = {}
            if url.startswith(("mysql", "mariadb")):
                # No gap locks: claims, charges and inserts of the task table don't block
                # each other beyond the rows they touch. The audit asks for REPEATABLE READ.
                options["isolation_level"] = "READ COMMITTED"
            self.engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=overflow,
                pool_pre_ping=True,
                pool_recycle=1800,
                **options,
            )
            self.read_engine = self.engine
            self._rows = None
            if url.startswith(("mysql", "mariadb")):
                _connect_errors_as_oserror(self.engine)
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commit on success, roll back on any exception."""
        if self.is_sqlite:
            if self._write_lock is None:
                self._write_lock = asyncio.Lock()
            async with self._write_lock, self._session(self._writer) as session, session.begin():
                yield session
        else:
            async with self._session(self._writer) as session, session.begin():
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._session(self._reader) as session, session.begin():
            yield session

    def _session(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> AbstractAsyncContextManager[AsyncSession]:
        # SQLite's sessions close in place (_inline_session); the others keep SQLAlchemy's
        # close in a task of its own, which a cancellation cannot cut short mid-I/O.
        return _inline_session(maker) if self.is_sqlite else maker()

    async def first(self, stmt: Select[*_Row], params: Mapping[str, Any]) -> tuple[*_Row] | None:
        """The first row of a Core SELECT, or None: no session, no ORM, no transaction.

        For the reads every request makes (the caller, the task, the balance); ``stmt``
        should be built once and reused, with its values as ``bindparam``s."""
        if self._rows is not None:
            return cast("tuple[*_Row] | None", self._rows.first(stmt, params))
        async with self.read_engine.connect() as conn:
            row = (await conn.execute(stmt, params)).first()
        return None if row is None else row.tuple()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        """Reads that all see one moment of the database (for the audit)."""
        if self.is_sqlite:
            async with self._reader() as session:
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                await session.execute(text("BEGIN"))
                try:
                    yield session
                finally:
                    await session.execute(text("COMMIT"))
        else:
            async with self._reader() as session:
                # Begins the transaction at REPEATABLE READ; the first read fixes the snapshot.
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                try:
                    yield session
                finally:
                    await session.rollback()

    async def dispose(self) -> None:
        if self._rows is not None:
            self._rows.close()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
