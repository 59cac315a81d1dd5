from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import ScratchDatabase, selected
from tests.support import Platform, User

# The browser and page fixtures, for the console tests.
pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="session", params=selected())
def database(request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """Each database-touching test runs once per backend: SQLite, MariaDB, PostgreSQL."""
    with ScratchDatabase(request.param) as db:
        yield db


@pytest.fixture(params=selected())
def fresh_database(request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """An empty database of its own, for tests that start their own processes."""
    with ScratchDatabase(request.param) as db:
        yield db


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, database: ScratchDatabase
) -> Iterator[Platform]:
    """One served platform per backend; each test makes its own users."""
    p = Platform(tmp_path_factory.mktemp(f"platform-{database.backend}"), database_url=database.url)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def own_platform(tmp_path: Path, fresh_database: ScratchDatabase) -> Callable[..., Platform]:
    """Makes a platform of the test's own, with the settings it names, on an empty database
    of the backend under test (once per backend); ``with`` it to run it. Once per test: a
    second platform would share the first one's database and folder."""
    made: list[Platform] = []

    def make(*, worker: bool = True, **settings: Any) -> Platform:
        assert not made, "own_platform makes one platform per test"
        made.append(Platform(tmp_path, worker=worker, database_url=fresh_database.url, **settings))
        return made[0]

    return make


@pytest.fixture
def audited(platform: Platform) -> Iterator[Platform]:
    """For tests that touch points: the ledger audit must pass after them."""
    yield platform
    platform.audit()


@pytest.fixture
def rich_user(audited: Platform) -> User:
    return audited.new_user(points=1000)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keeps each phase's report on the test, so a fixture can tell it failed
    (the browser fixture keeps a screenshot then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
