"""Channels for the operator: each change in one transaction with its audit entry."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.channels import service
from shengtu.channels.schemas import AttemptOut, ChannelCreate, ChannelOut, ChannelSettings
from shengtu.channels.secrets import KeyBox
from shengtu.db import Database
from shengtu.models.channels import Channel

# What the audit log keeps of a channel: never its keys.
AUDITED = (
    "name",
    "protocol",
    "base_url",
    "priority",
    "weight",
    "key_rps",
    "key_inflight",
    "timeout_seconds",
    "cost_per_picture",
    "uncertain_submit",
    "enabled",
)


async def channels(db: Database, tz: str) -> list[ChannelOut]:
    async with db.read() as session:
        rows = await service.list_channels(session)
        return [await service.describe(session, c, tz) for c in rows]


async def channel(db: Database, channel_id: int, tz: str) -> ChannelOut:
    async with db.read() as session:
        row = await service.get_channel(session, channel_id)
        return await service.describe(session, row, tz)


async def create(
    db: Database, box: KeyBox, actor: Principal, body: ChannelCreate, tz: str
) -> ChannelOut:
    async with db.write() as session:
        row = await service.create(session, box, body)
        after = audit.snapshot(row, AUDITED)
        await audit.record(session, actor, "channel.create", f"channel:{row.id}", None, after)
        return await service.describe(session, row, tz)


async def change(
    db: Database, box: KeyBox, actor: Principal, channel_id: int, body: ChannelSettings, tz: str
) -> ChannelOut:
    async with db.write() as session:
        row = await _changed(session, box, actor, channel_id, body)
        return await service.describe(session, row, tz)


async def _changed(
    session: AsyncSession, box: KeyBox, actor: Principal, channel_id: int, body: ChannelSettings
) -> Channel:
    before = audit.snapshot(await service.get_channel(session, channel_id), AUDITED)
    row = await service.change(session, box, channel_id, body)
    after = audit.snapshot(row, AUDITED)
    if body.addKeys or body.removeKeyIds:
        after["keysAdded"] = len(body.addKeys)
        after["keyIdsRemoved"] = body.removeKeyIds
    if body.models is not None:
        after["models"] = [m.modelName for m in body.models]
    await audit.record(session, actor, "channel.change", f"channel:{row.id}", before, after)
    return row


async def remove(db: Database, actor: Principal, channel_id: int) -> None:
    async with db.write() as session:
        before = audit.snapshot(await service.get_channel(session, channel_id), AUDITED)
        await service.remove(session, channel_id)
        await audit.record(session, actor, "channel.delete", f"channel:{channel_id}", before)


async def set_enabled(
    db: Database, box: KeyBox, actor: Principal, channel_id: int, enabled: bool, tz: str
) -> ChannelOut:
    """Audited as the change it is (``channel.change``)."""
    return await change(db, box, actor, channel_id, ChannelSettings(enabled=enabled), tz)


async def set_key_enabled(
    db: Database, actor: Principal, channel_id: int, key_id: int, enabled: bool, tz: str
) -> ChannelOut:
    async with db.write() as session:
        await service.set_key_enabled(session, channel_id, key_id, enabled)
        action = "channel.key.enable" if enabled else "channel.key.disable"
        await audit.record(session, actor, action, f"channel:{channel_id}/key:{key_id}")
        row = await service.get_channel(session, channel_id)
        return await service.describe(session, row, tz)


async def attempts(db: Database, task_no: str, tz: str) -> list[AttemptOut]:
    async with db.read() as session:
        return await service.attempts_of(session, task_no, tz)
