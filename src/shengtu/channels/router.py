"""``/admin/channels``: the upstream accounts tasks are routed to (admins only)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.api.envelope import Envelope, ok
from shengtu.api.inputs import RowId
from shengtu.audit import service as audit
from shengtu.auth.deps import AdminDep
from shengtu.auth.principal import Principal
from shengtu.channels import service
from shengtu.channels.schemas import (
    AttemptOut,
    ChannelCreate,
    ChannelOut,
    ChannelSettings,
    ChannelTestOut,
)
from shengtu.context import ContextDep
from shengtu.models.channels import Channel

router = APIRouter(tags=["admin: channels"])

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


@router.get("/admin/channels", response_model=Envelope[list[ChannelOut]])
async def list_channels(ctx: ContextDep, _: AdminDep) -> Envelope[list[ChannelOut]]:
    tz = ctx.settings.timezone
    async with ctx.db.read() as session:
        channels = await service.list_channels(session)
        return ok([await service.describe(session, c, tz) for c in channels])


@router.post("/admin/channels", response_model=Envelope[ChannelOut])
async def create_channel(
    body: ChannelCreate, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    """A channel: a protocol at a base URL, its keys (stored sealed, shown masked) and the
    catalog models it serves under the upstream's names."""
    async with ctx.db.write() as session:
        channel = await service.create(session, ctx.key_box, body)
        after = audit.snapshot(channel, AUDITED)
        await audit.record(session, admin, "channel.create", f"channel:{channel.id}", None, after)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


@router.get("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def get_channel(channel_id: RowId, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    async with ctx.db.read() as session:
        channel = await service.get_channel(session, channel_id)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


@router.put("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def change_channel(
    channel_id: RowId, body: ChannelSettings, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    async with ctx.db.write() as session:
        channel = await _changed(session, ctx, admin, channel_id, body)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


async def _changed(
    session: AsyncSession,
    ctx: ContextDep,
    admin: Principal,
    channel_id: int,
    body: ChannelSettings,
) -> Channel:
    before = audit.snapshot(await service.get_channel(session, channel_id), AUDITED)
    channel = await service.change(session, ctx.key_box, channel_id, body)
    after = audit.snapshot(channel, AUDITED)
    if body.addKeys or body.removeKeyIds:
        after["keysAdded"] = len(body.addKeys)
        after["keyIdsRemoved"] = body.removeKeyIds
    if body.models is not None:
        after["models"] = [m.modelName for m in body.models]
    await audit.record(session, admin, "channel.change", f"channel:{channel.id}", before, after)
    return channel


@router.delete("/admin/channels/{channel_id}", response_model=Envelope[None])
async def delete_channel(channel_id: RowId, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    async with ctx.db.write() as session:
        before = audit.snapshot(await service.get_channel(session, channel_id), AUDITED)
        await service.remove(session, channel_id)
        await audit.record(session, admin, "channel.delete", f"channel:{channel_id}", before)
    return ok(None)


async def _set_enabled(
    ctx: ContextDep, admin: Principal, channel_id: int, enabled: bool
) -> ChannelOut:
    async with ctx.db.write() as session:
        channel = await _changed(session, ctx, admin, channel_id, ChannelSettings(enabled=enabled))
        return await service.describe(session, channel, ctx.settings.timezone)


@router.post("/admin/channels/{channel_id}/enable", response_model=Envelope[ChannelOut])
async def enable_channel(
    channel_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_enabled(ctx, admin, channel_id, True))


@router.post("/admin/channels/{channel_id}/disable", response_model=Envelope[ChannelOut])
async def disable_channel(
    channel_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_enabled(ctx, admin, channel_id, False))


async def _set_key_enabled(
    ctx: ContextDep, admin: Principal, channel_id: int, key_id: int, enabled: bool
) -> ChannelOut:
    async with ctx.db.write() as session:
        await service.set_key_enabled(session, channel_id, key_id, enabled)
        action = "channel.key.enable" if enabled else "channel.key.disable"
        await audit.record(session, admin, action, f"channel:{channel_id}/key:{key_id}")
        channel = await service.get_channel(session, channel_id)
        return await service.describe(session, channel, ctx.settings.timezone)


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/enable", response_model=Envelope[ChannelOut]
)
async def enable_key(
    channel_id: RowId, key_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_key_enabled(ctx, admin, channel_id, key_id, True))


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/disable", response_model=Envelope[ChannelOut]
)
async def disable_key(
    channel_id: RowId, key_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_key_enabled(ctx, admin, channel_id, key_id, False))


@router.post("/admin/channels/{channel_id}/test", response_model=Envelope[ChannelTestOut])
async def test_channel(channel_id: RowId, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelTestOut]:
    """Asks the upstream through the channel's first enabled key about a job that does not
    exist: proves the address and the key, and starts no paid job."""
    return ok(await service.probe(ctx.db, ctx.key_box, channel_id))


@router.get("/admin/tasks/{task_no}/attempts", response_model=Envelope[list[AttemptOut]])
async def task_attempts(task_no: str, ctx: ContextDep, _: AdminDep) -> Envelope[list[AttemptOut]]:
    """Every try at handing the task upstream: channel, key, outcome, status, latency."""
    async with ctx.db.read() as session:
        return ok(await service.attempts_of(session, task_no, ctx.settings.timezone))
