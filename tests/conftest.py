from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Platform, User


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One served platform for the session; each test makes its own users."""
    p = Platform(tmp_path_factory.mktemp("platform")).start()
    try:
        yield p
    finally:
        p.stop()


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
