"""A key's breaker: opened by failures in a row, doubled only by a failed probe; tries that
fail while it is open (sent before it opened) neither extend nor double it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shengtu.channels import service
from shengtu.config import Settings
from shengtu.db import Database
from shengtu.migrate import upgrade
from shengtu.models.channels import Channel, ChannelKey


def test_stragglers_do_not_double_the_cool_down_and_a_failed_probe_does(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        breaker_failures=3,
        breaker_cooldown_seconds=10,
        breaker_max_cooldown_seconds=600,
    )
    upgrade(settings)
    db = Database(settings.resolved_database_url)

    async def run() -> list[tuple[bool, float, int]]:
        async with db.write() as s:
            channel = Channel(name="c", protocol="suchuang", base_url="http://x")
            s.add(channel)
            await s.flush()
            key = ChannelKey(channel_id=channel.id, sealed="x", hint="…abcd")
            s.add(key)
            await s.flush()
            key_id = key.id
        seen = []

        async def fail(probe: bool = False) -> None:
            async with db.write() as s:
                opened = await service.key_failed(s, key_id, "坏了", settings, probe=probe)
            async with db.read() as s:
                k = await s.get(ChannelKey, key_id)
                assert k is not None
                seen.append((opened, k.cooldown_seconds, k.consecutive_failures))

        for _ in range(3):
            await fail()  # the third opens it for 10 s
        for _ in range(5):
            await fail()  # stragglers: counted, the cool-down stays 10 s
        await fail(probe=True)  # the probe fails: 20 s
        async with db.write() as s:
            await service.key_succeeded(s, key_id)
        for _ in range(3):
            await fail()  # closed again: a new opening starts from 10 s
        await db.dispose()
        return seen

    seen = asyncio.run(run())
    assert seen[:3] == [(False, 0.0, 1), (False, 0.0, 2), (True, 10.0, 3)]
    assert seen[3:8] == [(False, 10.0, n) for n in range(4, 9)]
    assert seen[8] == (True, 20.0, 9)
    assert seen[9:] == [(False, 0.0, 1), (False, 0.0, 2), (True, 10.0, 3)]
