"""``/admin/channels``: the upstream accounts tasks are routed to (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.deps import AdminDep, ContextDep
from shengtu.api.envelope import Envelope, ok
from shengtu.channels import service
from shengtu.channels.schemas import (
    AttemptOut,
    ChannelCreate,
    ChannelOut,
    ChannelSettings,
    ChannelTestOut,
)

router = APIRouter(tags=["admin: channels"])


@router.get("/admin/channels", response_model=Envelope[list[ChannelOut]])
async def list_channels(ctx: ContextDep, _: AdminDep) -> Envelope[list[ChannelOut]]:
    tz = ctx.settings.timezone
    async with ctx.db.read() as session:
        channels = await service.list_channels(session)
        return ok([await service.describe(session, c, tz) for c in channels])


@router.post("/admin/channels", response_model=Envelope[ChannelOut])
async def create_channel(body: ChannelCreate, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    """A channel: a protocol at a base URL, its keys (stored sealed, shown masked) and the
    catalog models it serves under the upstream's names."""
    async with ctx.db.write() as session:
        channel = await service.create(session, ctx.key_box, body)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


@router.get("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def get_channel(channel_id: int, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    async with ctx.db.read() as session:
        channel = await service.get_channel(session, channel_id)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


@router.put("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def change_channel(
    channel_id: int, body: ChannelSettings, ctx: ContextDep, _: AdminDep
) -> Envelope[ChannelOut]:
    async with ctx.db.write() as session:
        channel = await service.change(session, ctx.key_box, channel_id, body)
        return ok(await service.describe(session, channel, ctx.settings.timezone))


@router.delete("/admin/channels/{channel_id}", response_model=Envelope[None])
async def delete_channel(channel_id: int, ctx: ContextDep, _: AdminDep) -> Envelope[None]:
    async with ctx.db.write() as session:
        await service.remove(session, channel_id)
    return ok(None)


async def _set_enabled(ctx: ContextDep, channel_id: int, enabled: bool) -> ChannelOut:
    async with ctx.db.write() as session:
        channel = await service.change(
            session, ctx.key_box, channel_id, ChannelSettings(enabled=enabled)
        )
        return await service.describe(session, channel, ctx.settings.timezone)


@router.post("/admin/channels/{channel_id}/enable", response_model=Envelope[ChannelOut])
async def enable_channel(channel_id: int, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    return ok(await _set_enabled(ctx, channel_id, True))


@router.post("/admin/channels/{channel_id}/disable", response_model=Envelope[ChannelOut])
async def disable_channel(channel_id: int, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    return ok(await _set_enabled(ctx, channel_id, False))


async def _set_key_enabled(
    ctx: ContextDep, channel_id: int, key_id: int, enabled: bool
) -> ChannelOut:
    async with ctx.db.write() as session:
        await service.set_key_enabled(session, channel_id, key_id, enabled)
        channel = await service.get_channel(session, channel_id)
        return await service.describe(session, channel, ctx.settings.timezone)


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/enable", response_model=Envelope[ChannelOut]
)
async def enable_key(
    channel_id: int, key_id: int, ctx: ContextDep, _: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_key_enabled(ctx, channel_id, key_id, True))


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/disable", response_model=Envelope[ChannelOut]
)
async def disable_key(
    channel_id: int, key_id: int, ctx: ContextDep, _: AdminDep
) -> Envelope[ChannelOut]:
    return ok(await _set_key_enabled(ctx, channel_id, key_id, False))


@router.post("/admin/channels/{channel_id}/test", response_model=Envelope[ChannelTestOut])
async def test_channel(channel_id: int, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelTestOut]:
    """Asks the upstream through the channel's first enabled key about a job that does not
    exist: proves the address and the key, and starts no paid job."""
    return ok(await service.probe(ctx.db, ctx.key_box, channel_id))


@router.get("/admin/tasks/{task_no}/attempts", response_model=Envelope[list[AttemptOut]])
async def task_attempts(task_no: str, ctx: ContextDep, _: AdminDep) -> Envelope[list[AttemptOut]]:
    """Every try at handing the task upstream: channel, key, outcome, status, latency."""
    async with ctx.db.read() as session:
        return ok(await service.attempts_of(session, task_no, ctx.settings.timezone))
