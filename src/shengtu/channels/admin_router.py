"""``/admin/channels``: the upstream accounts tasks are routed to (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, ok
from shengtu.api.inputs import RowId
from shengtu.auth.deps import AdminDep
from shengtu.channels import admin_service as service
from shengtu.channels.schemas import (
    AttemptOut,
    ChannelCreate,
    ChannelOut,
    ChannelSettings,
    ChannelTestOut,
)
from shengtu.channels.service import probe
from shengtu.context import ContextDep

router = APIRouter(tags=["admin: channels"])


@router.get("/admin/channels", response_model=Envelope[list[ChannelOut]])
async def list_channels(ctx: ContextDep, _: AdminDep) -> Envelope[list[ChannelOut]]:
    return ok(await service.channels(ctx.db, ctx.settings.timezone))


@router.post("/admin/channels", response_model=Envelope[ChannelOut])
async def create_channel(
    body: ChannelCreate, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    """A channel: a protocol at a base URL, its keys (stored sealed, shown masked) and the
    catalog models it serves under the upstream's names."""
    return ok(await service.create(ctx.db, ctx.key_box, admin, body, ctx.settings.timezone))


@router.get("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def get_channel(channel_id: RowId, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelOut]:
    return ok(await service.channel(ctx.db, channel_id, ctx.settings.timezone))


@router.put("/admin/channels/{channel_id}", response_model=Envelope[ChannelOut])
async def change_channel(
    channel_id: RowId, body: ChannelSettings, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    tz = ctx.settings.timezone
    return ok(await service.change(ctx.db, ctx.key_box, admin, channel_id, body, tz))


@router.delete("/admin/channels/{channel_id}", response_model=Envelope[None])
async def delete_channel(channel_id: RowId, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    await service.remove(ctx.db, admin, channel_id)
    return ok(None)


@router.post("/admin/channels/{channel_id}/enable", response_model=Envelope[ChannelOut])
async def enable_channel(
    channel_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    tz = ctx.settings.timezone
    return ok(await service.set_enabled(ctx.db, ctx.key_box, admin, channel_id, True, tz))


@router.post("/admin/channels/{channel_id}/disable", response_model=Envelope[ChannelOut])
async def disable_channel(
    channel_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    tz = ctx.settings.timezone
    return ok(await service.set_enabled(ctx.db, ctx.key_box, admin, channel_id, False, tz))


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/enable", response_model=Envelope[ChannelOut]
)
async def enable_key(
    channel_id: RowId, key_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    tz = ctx.settings.timezone
    return ok(await service.set_key_enabled(ctx.db, admin, channel_id, key_id, True, tz))


@router.post(
    "/admin/channels/{channel_id}/keys/{key_id}/disable", response_model=Envelope[ChannelOut]
)
async def disable_key(
    channel_id: RowId, key_id: RowId, ctx: ContextDep, admin: AdminDep
) -> Envelope[ChannelOut]:
    tz = ctx.settings.timezone
    return ok(await service.set_key_enabled(ctx.db, admin, channel_id, key_id, False, tz))


@router.post("/admin/channels/{channel_id}/test", response_model=Envelope[ChannelTestOut])
async def test_channel(channel_id: RowId, ctx: ContextDep, _: AdminDep) -> Envelope[ChannelTestOut]:
    """Asks the upstream through the channel's first enabled key about a job that does not
    exist: proves the address and the key, and starts no paid job."""
    return ok(await probe(ctx.db, ctx.key_box, channel_id))


@router.get("/admin/tasks/{task_no}/attempts", response_model=Envelope[list[AttemptOut]])
async def task_attempts(task_no: str, ctx: ContextDep, _: AdminDep) -> Envelope[list[AttemptOut]]:
    """Every try at handing the task upstream: channel, key, outcome, status, latency."""
    return ok(await service.attempts(ctx.db, task_no, ctx.settings.timezone))
