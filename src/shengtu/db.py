"""Engine, sessions and the one transaction helper.

``Database.write()`` is the unit of work: one transaction, committed on success and
rolled back on any exception. On SQLite it starts with ``BEGIN IMMEDIATE`` (so a write
transaction never fails half-way on a lock upgrade) behind an in-process lock (so the
writers of one process queue fairly instead of spinning in SQLite's busy handler).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, make_url, text
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

from shengtu.sqlite_inline import inline_connector

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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


def _sqlite_engine(url: str, begin: str | None, pool_size: int) -> AsyncEngine:
    """``begin=None``: autocommit reads. Each statement reads a consistent snapshot in
    WAL mode, and skipping BEGIN/ROLLBACK saves two round trips per session.

    Statements run on the loop's own thread (:mod:`shengtu.sqlite_inline`)."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        async_creator=inline_connector(make_url(url).database or ":memory:", timeout=30),
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


class Database:
    def __init__(self, url: str, pool_size: int = 10, overflow: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE", pool_size=2)
            self.read_engine = _sqlite_engine(url, None, pool_size=pool_size)
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
            async with self._write_lock, self._writer() as session, session.begin():
                yield session
        else:
            async with self._writer() as session, session.begin():
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session, session.begin():
            yield session

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
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
