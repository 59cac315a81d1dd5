"""``SHENGTU_SUCHUANG_API_KEY`` as a channel, so a deployment configured by environment
shows (and routes through) its upstream like any other channel."""

from __future__ import annotations

import contextlib

from sqlalchemy import select

from shengtu.channels import service
from shengtu.channels.schemas import ChannelCreate, ChannelModelIn, ChannelSettings
from shengtu.context import AppContext
from shengtu.errors import Conflict
from shengtu.logs import get_logger
from shengtu.models.catalog import PointsConfig
from shengtu.models.channels import Channel, ChannelKey
from shengtu.providers.registry import DEFAULT_PROTOCOL

log = get_logger("shengtu.channels")

ENV_CHANNEL = "速创(环境变量)"


async def sync_env_channel(ctx: AppContext) -> None:
    """Creates the channel on the first start with a key set, serving every 速创 model of
    the catalog; on later starts keeps its base URL and key equal to the settings (change
    those in the environment, or add other channels in ``/admin/channels``)."""
    key = ctx.settings.suchuang_api_key
    if not key:
        return
    with contextlib.suppress(Conflict):  # another process created it at the same moment
        await _sync(ctx, key)


def _opens_to(ctx: AppContext, sealed: str, key: str) -> bool:
    try:
        return ctx.key_box.open(sealed) == key
    except ValueError:  # sealed under another SHENGTU_SECRET_KEY: replaced below
        return False


async def _sync(ctx: AppContext, key: str) -> None:
    settings = ctx.settings
    async with ctx.db.write() as session:
        channel = await session.scalar(select(Channel).where(Channel.name == ENV_CHANNEL))
        if channel is None:
            rows = await session.scalars(
                select(PointsConfig).where(PointsConfig.provider == DEFAULT_PROTOCOL)
            )
            models = [
                ChannelModelIn(
                    modelName=r.model_name,
                    upstreamModel=r.upstream_model,
                    upstreamParams=dict(r.upstream_params or {}),
                )
                for r in rows
            ]
            if not models:
                return
            body = ChannelCreate(
                name=ENV_CHANNEL,
                protocol=DEFAULT_PROTOCOL,
                baseUrl=settings.suchuang_base_url,
                addKeys=[key],
                models=models,
                keyRps=settings.upstream_rps,
                timeoutSeconds=settings.upstream_timeout,
                uncertainSubmit=settings.uncertain_submit,
            )
            await service.create(session, ctx.key_box, body)
            log.info("channel_created_from_settings", channel=ENV_CHANNEL)
            return
        keys = list(
            await session.scalars(select(ChannelKey).where(ChannelKey.channel_id == channel.id))
        )
        known = [k for k in keys if _opens_to(ctx, k.sealed, key)]
        change = ChannelSettings(
            baseUrl=settings.suchuang_base_url,
            keyRps=settings.upstream_rps,
            timeoutSeconds=settings.upstream_timeout,
            uncertainSubmit=settings.uncertain_submit,
            addKeys=[] if known else [key],
        )
        # A key no longer in the settings is disabled, not removed: tasks it took are
        # still polled through it.
        for old in keys:
            if old not in known and old.enabled:
                await service.set_key_enabled(
                    session, channel.id, old.id, False, "已不在 SHENGTU_SUCHUANG_API_KEY 中"
                )
        await service.change(session, ctx.key_box, channel.id, change)
