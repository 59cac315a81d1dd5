"""The in-memory cell-rate limit: N at once, then one per period/N; forgets idle keys."""

from __future__ import annotations

import asyncio

import pytest

from shengtu.auth import limits
from shengtu.auth.limits import MemoryRates, Rate


def test_n_per_period_at_once_then_one_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    store, rate = MemoryRates(), Rate(600, 60)

    def take(key: str = "user:1") -> float:
        return asyncio.run(store.acquire(key, rate, take=True))

    assert [take() for _ in range(600)] == [0.0] * 600
    assert take() == pytest.approx(0.1)
    assert take("user:2") == 0.0  # another key has its own allowance
    assert asyncio.run(store.acquire("user:1", rate, take=False)) == pytest.approx(0.1)
    now[0] += 0.1
    assert take() == 0.0
    assert take() == pytest.approx(0.1)
    now[0] += 60
    assert [take() for _ in range(600)] == [0.0] * 600


def test_a_refusal_or_a_test_counts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    store, rate = MemoryRates(), Rate(3, 300)
    for _ in range(5):
        assert asyncio.run(store.acquire("login-name:a", rate, take=False)) == 0.0
    assert [asyncio.run(store.acquire("login-name:a", rate, take=True)) for _ in range(4)] == [
        0.0,
        0.0,
        0.0,
        pytest.approx(100),
    ]
    now[0] += 100
    assert asyncio.run(store.acquire("login-name:a", rate, take=True)) == 0.0


def test_idle_keys_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    store, rate = MemoryRates(), Rate(60, 60)

    async def many() -> None:
        for i in range(25_000):
            now[0] += 0.01
            await store.acquire(f"user:{i}", rate, take=True)

    asyncio.run(many())
    assert len(store._tat) < 20_000  # each key idle after its 1 s interval is dropped
