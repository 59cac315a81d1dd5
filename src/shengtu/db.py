"""Engine, sessions and the one transaction helper.

``Database.write()`` is the unit of work: one transaction, committed on success and
rolled back on any exception. On SQLite it starts with ``BEGIN IMMEDIATE`` (so a write
transaction never fails half-way on a lock upgrade) behind an in-process lock (so the
writers of one process queue fairly instead of spinning in SQLite's busy handler).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, TypeVarTuple, cast

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Select,
    Table,
    bindparam,
    delete,
    event,
    insert,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter, ClauseElement
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import TypeDecorator

from shengtu.sqlite_inline import InlineConnection, inline_connector, open_sqlite

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


SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON")


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
        for pragma in SQLITE_PRAGMAS:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    if begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Straight to the connection: SQLAlchemy tracks no BEGIN of its own here, and
            # its execution path cost more than SQLite's BEGIN.
            raw: sqlite3.Connection = conn.connection.driver_connection.raw
            with sqlite_errors(begin, ()):
                raw.execute(begin)

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


@contextmanager
def sqlite_errors(sql: str, parameters: Sequence[Any]) -> Iterator[None]:
    """SQLite's errors as SQLAlchemy raises them (IntegrityError, OperationalError …), for
    statements run on the connection itself: the handlers that answer a busy database
    with 503, or a second refund with a refusal, catch those."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc


@dataclass(frozen=True)
class _CompiledSqlite:
    sql: str
    binds: tuple[str, ...]
    defaults: Mapping[str, Any]
    # Only the binds and result columns that have a processor: most have none (ints,
    # strings), and a pass over every value cost more than the conversions.
    bind_processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, params: Mapping[str, Any]) -> list[Any]:
        values = [params[n] if n in params else self.defaults[n] for n in self.binds]
        for index, processor in self.bind_processors:
            values[index] = processor(values[index])
        return values

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if not self.processors:
            return tuple(row)
        values = list(row)
        for index, processor in self.processors:
            if values[index] is not None:
                values[index] = processor(values[index])
        return tuple(values)


def _compile_sqlite(stmt: Executable, dialect: Dialect) -> _CompiledSqlite:
    """``stmt`` as SQLite runs it: its SQL, its binds in order with their conversions, and
    its result columns' conversions (the values the ORM would load: datetimes, JSON)."""
    compiled = cast("SQLCompiler", cast("ClauseElement", stmt).compile(dialect=dialect))
    if compiled.insert_prefetch or compiled.update_prefetch:
        # A column default computed in Python would be skipped here: the statement must
        # set every column it writes.
        missing = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        raise TypeError(f"statement leaves Python-side defaults unset: {missing}")
    binds = tuple(compiled.positiontup or ())
    if isinstance(stmt, Update):
        # MySQL's and PostgreSQL's compilers refuse these (SQLite's lets them pass): caught
        # here, the SQLite tests find them too.
        named = {b.key for b in iterate(stmt) if isinstance(b, BindParameter) and not b.unique}
        clash = named & {c.key for c in stmt.table.columns}
        if clash:
            raise TypeError(f"bind names that are columns of the updated table: {clash}")
    if any(compiled.binds[n].expanding for n in binds):
        raise TypeError("expanding (IN) parameters are not supported here")
    processors = []
    if isinstance(stmt, Select):
        for index, column in enumerate(stmt.selected_columns):
            impl = column.type.dialect_impl(dialect)
            processor = impl.result_processor(dialect, None)
            if processor is not None:
                processors.append((index, processor))
    bind_processors = cast("dict[str, Callable[[Any], Any]]", compiled._bind_processors)
    return _CompiledSqlite(
        sql=compiled.string,
        binds=binds,
        defaults={
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        },
        bind_processors=tuple(
            (i, bind_processors[n]) for i, n in enumerate(binds) if bind_processors.get(n)
        ),
        processors=tuple(processors),
    )


class _CompiledCache:
    """Statements compiled once, by identity: they are built once, with ``bindparam``s.
    Bounded, so that a statement built per call costs a compile, not memory."""

    def __init__(self, dialect: Dialect, size: int = 512) -> None:
        self._dialect = dialect
        self._size = size
        self._compiled: dict[Executable, _CompiledSqlite] = {}

    def __getitem__(self, stmt: Executable) -> _CompiledSqlite:
        compiled = self._compiled.get(stmt)
        if compiled is None:
            if len(self._compiled) >= self._size:
                self._compiled.clear()
            compiled = self._compiled[stmt] = _compile_sqlite(stmt, self._dialect)
        return compiled


_SQLITE_COMPILED: dict[Dialect, _CompiledCache] = {}


def _compiled_for(dialect: Dialect) -> _CompiledCache:
    """One cache per dialect: the row reader and :func:`run` compile a statement once."""
    cache = _SQLITE_COMPILED.get(dialect)
    if cache is None:
        cache = _SQLITE_COMPILED[dialect] = _CompiledCache(dialect)
    return cache


class SqliteRowReader:
    """One-row reads on SQLite by statements compiled once: the hot GETs' path.

    A connection of its own in autocommit, run on the loop's thread like
    :mod:`shengtu.sqlite_inline`. In WAL mode a read never waits on a writer, and each
    statement sees the last commit. The columns' own result processors convert the row, so
    the values are those the ORM would load (datetimes, JSON, booleans).
    """

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._compiled = _compiled_for(dialect)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_sqlite(self._path, SQLITE_TIMEOUT)
            self._conn.execute("PRAGMA query_only=ON")
        return self._conn

    def first(
        self, stmt: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        read = self._compiled[stmt]
        parameters = read.parameters(params)
        with sqlite_errors(read.sql, parameters):
            row = self._connection().execute(read.sql, parameters).fetchone()
        return None if row is None else read.row(row)

    def all(
        self, stmt: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        read = self._compiled[stmt]
        parameters = read.parameters(params)
        with sqlite_errors(read.sql, parameters):
            rows = self._connection().execute(read.sql, parameters).fetchall()
        return [read.row(r) for r in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class Ran:
    """What a statement run by :func:`run` gave: its rows (a SELECT), how many rows it
    matched (an UPDATE or DELETE), the new row's id (an INSERT)."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    lastrowid: int | None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def first(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


_CONNECTION = "shengtu.connection"


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The connection of ``session``'s transaction, asked of the session once per
    transaction (each ask is a trip through a greenlet: 16 a task, 10 % of its CPU)."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_CONNECTION)
    if transaction is not None and held is not None and held[0] is transaction:
        conn: AsyncConnection = held[1]
        return conn
    conn = await session.connection()
    session.info[_CONNECTION] = (session.sync_session.get_transaction(), conn)
    return conn


@dataclass(frozen=True)
class Tx:
    """A write transaction of statements built once (:func:`run`, :func:`add`), without an
    ORM session: on SQLite the connection itself, elsewhere a Core connection. Opened by
    :meth:`Database.transaction`. A session costs ~175 µs a transaction on SQLite, more
    than the statements of a charge or a task's end."""

    dialect: Dialect
    sqlite: sqlite3.Connection | None = None
    conn: AsyncConnection | None = None
    committed: list[Callable[[], None]] = field(default_factory=list)


# Where the task path's statements run: an ORM session's transaction, or a Tx.
Conn = AsyncSession | Tx
_COMMITTED = "shengtu.committed"


def after_commit(session: Conn, fn: Callable[[], None]) -> None:
    """Call ``fn`` once ``session``'s transaction has committed; never if it rolls back
    (what is counted, e.g. in /metrics, is what happened)."""
    if isinstance(session, Tx):
        session.committed.append(fn)
        return
    waiting: list[Callable[[], None]] | None = session.info.get(_COMMITTED)
    if waiting is None:
        waiting = session.info[_COMMITTED] = []
        sync = session.sync_session

        def committed(_: Any) -> None:
            done, waiting[:] = list(waiting), []
            for call in done:
                call()

        def rolled_back(_: Any) -> None:
            waiting.clear()

        event.listen(sync, "after_commit", committed)
        event.listen(sync, "after_rollback", rolled_back)
    waiting.append(fn)


async def run(session: Conn, stmt: Executable, params: Mapping[str, Any] | None = None) -> Ran:
    """A Core statement, built once with ``bindparam``s, in ``session``'s transaction.

    For the statements every task makes (charge, claim, move): on SQLite the statement is
    compiled once and run on the session's own connection, without SQLAlchemy's
    per-execution work (about 250 µs a statement against 10 µs for SQLite itself); on the
    other databases it runs through the session's Core connection, past the ORM.
    An INSERT must set every column that has a Python-side default."""
    params = params or {}
    raw: sqlite3.Connection | None
    if isinstance(session, Tx):
        dialect, raw, conn = session.dialect, session.sqlite, session.conn
    else:
        conn = await _connection(session)
        dialect = conn.dialect
        raw = None
        if dialect.name == "sqlite":
            inline: InlineConnection = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
            raw = inline.raw
    if raw is None:
        assert conn is not None
        result = await conn.execute(stmt, params)
        rows = [tuple(r) for r in result.fetchall()] if result.returns_rows else []
        lastrowid = None
        if result.context.isinsert and not result.context.executemany:
            key = result.inserted_primary_key
            lastrowid = key[0] if key else None
        return Ran(rows, result.rowcount, lastrowid)
    compiled = _compiled_for(dialect)[stmt]
    parameters = compiled.parameters(params)
    with sqlite_errors(compiled.sql, parameters):
        cursor = raw.execute(compiled.sql, parameters)
        fetched = cursor.fetchall() if cursor.description else []
    rows = [compiled.row(r) for r in fetched]
    return Ran(rows, cursor.rowcount, cursor.lastrowid)


@dataclass(frozen=True)
class _Mapped:
    """A mapped class's table as :func:`add` and :func:`loaded` use it, worked out once."""

    # (attribute, column) for every column, in the table's order
    columns: tuple[tuple[str, Column[Any]], ...]
    pk: str
    insert: Executable  # every column but the autoincrement id, each its own bindparam


_MAPPED: dict[type[Base], _Mapped] = {}


def _mapped(cls: type[Base]) -> _Mapped:
    found = _MAPPED.get(cls)
    if found is None:
        mapper = inspect(cls)
        table = cast("Table", mapper.local_table)
        (pk,) = mapper.primary_key
        columns = tuple((mapper.get_property_by_column(c).key, c) for c in table.columns)
        found = _MAPPED[cls] = _Mapped(
            columns=columns,
            pk=mapper.get_property_by_column(pk).key,
            insert=insert(table).values(
                {c.key: bindparam(c.key) for _, c in columns if c is not pk}
            ),
        )
    return found


_M = TypeVar("_M", bound=Base)


def columns_of(cls: type[Base]) -> Select[Any]:
    """A Core SELECT of every column of ``cls``'s table, in order: read by :func:`run` and
    turned into objects by :func:`loaded`."""
    return select(*(column for _, column in _mapped(cls).columns))


def loaded(cls: type[_M], row: Sequence[Any]) -> _M:
    """An object of ``cls`` from a row of :func:`columns_of`, as a session would have loaded
    and let go of it (no pending changes)."""
    obj = cast("_M", inspect(cls).class_manager.new_instance())
    # Into the instance's dict, as the ORM's own loader writes: committed, no history.
    obj.__dict__.update(zip((key for key, _ in _mapped(cls).columns), row, strict=True))
    return obj


async def add(session: Conn, row: Base) -> None:
    """Insert a new ``row`` (a mapped object with an autoincrement id) in ``session``'s
    transaction, as :func:`run` runs a statement; its id and defaults are set on it, and
    it stays out of the session (what a flush would do, at a tenth of the cost)."""
    mapped = _mapped(type(row))
    given = row.__dict__
    params: dict[str, Any] = {}
    for key, column in mapped.columns:
        if key == mapped.pk:
            continue
        if key in given:
            value = given[key]
        elif column.default is not None:
            default = column.default
            value = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
            set_committed_value(row, key, value)
        else:
            value = None
        params[column.key] = value
    ran = await run(session, mapped.insert, params)
    set_committed_value(row, mapped.pk, ran.lastrowid)


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
        # SQLite: the connection of transaction(), behind the same lock as write()'s.
        self._writer_conn: sqlite3.Connection | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commit on success, roll back on any exception."""
        if self.is_sqlite:
            async with self._writing(), self._session(self._writer) as session, session.begin():
                yield session
        else:
            async with self._session(self._writer) as session, session.begin():
                yield session

    def _writing(self) -> asyncio.Lock:
        """SQLite's in-process write lock, made in the running loop on first use."""
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One write transaction for :func:`run` and :func:`add` only, as :meth:`write`
        commits and rolls back; for the statements of every task (charge, claim, end)."""
        async with self._transaction() as tx:
            yield tx
        for call in tx.committed:
            call()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                yield Tx(conn.dialect, conn=conn)
            return
        async with self._writing():
            if self._writer_conn is None:
                self._writer_conn = open_sqlite(_sqlite_path(self.url), SQLITE_TIMEOUT)
                for pragma in SQLITE_PRAGMAS:
                    self._writer_conn.execute(f"PRAGMA {pragma}")
            raw = self._writer_conn
            with sqlite_errors("BEGIN IMMEDIATE", ()):
                raw.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self.engine.dialect, sqlite=raw)
                with sqlite_errors("COMMIT", ()):
                    raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise

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

    @staticmethod
    def deleting(column: Any) -> Callable[[AsyncSession, list[int]], Awaitable[int]]:
        """The ``delete_ids`` of :meth:`delete_in_batches` for rows nothing hangs on: it
        deletes those whose ``column`` (their id) is among the ids."""

        async def delete_ids(session: AsyncSession, ids: list[int]) -> int:
            result = await session.execute(delete(column.table).where(column.in_(ids)))
            return int(getattr(result, "rowcount", 0) or 0)

        return delete_ids

    async def delete_in_batches(
        self,
        due: Select[int],
        delete_ids: Callable[[AsyncSession, list[int]], Awaitable[int]],
        *,
        batch: int,
        batches: int = 100,
    ) -> int:
        """Deletes what ``due`` (ids, ordered, unlimited) selects, ``batch`` ids in each
        short write transaction, at most ``batches`` times: a prune never holds a table.
        ``delete_ids`` deletes those ids (and what hangs on them) and says how many rows
        went; several processes may prune at once, each batch deleting what is still there."""
        gone = 0
        for _ in range(batches):
            async with self.write() as session:
                ids = list(await session.scalars(due.limit(batch)))
                if not ids:
                    break
                gone += await delete_ids(session, ids)
            if len(ids) < batch:
                break
        return gone

    async def first(self, stmt: Select[*_Row], params: Mapping[str, Any]) -> tuple[*_Row] | None:
        """The first row of a Core SELECT, or None: no session, no ORM, no transaction.

        For the reads every request makes (the caller, the task, the balance); ``stmt``
        should be built once and reused, with its values as ``bindparam``s."""
        if self._rows is not None:
            return cast("tuple[*_Row] | None", self._rows.first(stmt, params))
        async with self.read_engine.connect() as conn:
            row = (await conn.execute(stmt, params)).first()
        return None if row is None else row.tuple()

    async def all(self, stmt: Select[*_Row], params: Mapping[str, Any]) -> list[tuple[*_Row]]:
        """Every row of a Core SELECT, as :meth:`first` reads one."""
        if self._rows is not None:
            return cast("list[tuple[*_Row]]", self._rows.all(stmt, params))
        async with self.read_engine.connect() as conn:
            return [row.tuple() for row in await conn.execute(stmt, params)]

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
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
