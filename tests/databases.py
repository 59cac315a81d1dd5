"""The databases the suite runs on: SQLite always; MariaDB and PostgreSQL when reachable.

Under CI=true an unreachable server is a failure, not a skip. Locally,
SHENGTU_TEST_DATABASES=sqlite (a comma list) narrows the run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket

import pytest

CI = os.environ.get("CI") == "true"
SERVERS = {
    "mariadb": ("127.0.0.1", 3306),
    "postgresql": ("127.0.0.1", 5432),
}
ALL = ["sqlite", "mariadb", "postgresql"]


def selected() -> list[str]:
    wanted = os.environ.get("SHENGTU_TEST_DATABASES")
    if not wanted or CI:
        return ALL
    return [b for b in ALL if b in wanted.split(",")]


def reachable(backend: str) -> bool:
    host, port = SERVERS[backend]
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require(backend: str) -> None:
    if backend == "sqlite" or reachable(backend):
        return
    host, port = SERVERS[backend]
    message = f"{backend} is not reachable at {host}:{port}"
    if CI:
        pytest.fail(message + " (CI=true: every database must be there)")
    pytest.skip(message)


# utf8mb4_bin: usernames compare as on SQLite and PostgreSQL (case-sensitive).
CREATE = {
    "mariadb": "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    "postgresql": 'CREATE DATABASE "{}"',
}
DROP = {
    "mariadb": "DROP DATABASE IF EXISTS `{}`",
    "postgresql": 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)',
}


async def _admin(backend: str, statement: str) -> None:
    """Run one statement as the server's administrator (outside any database)."""
    if backend == "mariadb":
        import asyncmy  # type: ignore[import-untyped]

        conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", password="")
        async with conn.cursor() as cur:
            await cur.execute(statement)
        conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(
            host="127.0.0.1", port=5432, user="postgres", database="postgres"
        )
        await pg.execute(statement)
        await pg.close()


class ScratchDatabase:
    """A fresh, empty database on one backend; ``url`` is '' for SQLite (the default file)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"shengtu_test_{secrets.token_hex(4)}"
        self.url = ""

    def __enter__(self) -> ScratchDatabase:
        require(self.backend)
        if self.backend == "mariadb":
            asyncio.run(_admin("mariadb", CREATE["mariadb"].format(self.name)))
            self.url = f"mysql+asyncmy://root@127.0.0.1:3306/{self.name}?charset=utf8mb4"
        elif self.backend == "postgresql":
            asyncio.run(_admin("postgresql", CREATE["postgresql"].format(self.name)))
            self.url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.name}"
        return self

    def __exit__(self, *_: object) -> None:
        if self.backend != "sqlite":
            asyncio.run(_admin(self.backend, DROP[self.backend].format(self.name)))
