"""Which (channel, key) a task goes to: the routing table, read from the database.

Every worker keeps the table in memory and re-reads it every second, so an admin's
change reaches all workers without a message. A task accepted through a key is polled
through that key; a key's provider (its HTTP session and pacing) lives while the table
names it, enabled or not, so tasks accepted before a key was disabled can still be polled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from shengtu.channels.secrets import KeyBox
from shengtu.db import Database, utcnow
from shengtu.logs import get_logger
from shengtu.models.channels import Channel, ChannelKey, ChannelModel
from shengtu.models.tasks import AiTask
from shengtu.pricing.parameters import Chosen, InvalidParameters
from shengtu.pricing.rules import FLAT, PriceRule
from shengtu.providers.base import Provider
from shengtu.providers.pacing import Pacing
from shengtu.providers.registry import PROTOCOLS

log = get_logger("shengtu.channels")

# Cheap (three small tables): an admin's change reaches every worker within a second.
REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Cost:
    """What the operator pays a channel for a model's pictures: its ``cost_per_picture``,
    following the choices by the channel model's cost rule."""

    per_picture: Decimal = Decimal(0)
    rule: PriceRule = FLAT

    def of(self, chosen: Chosen, pictures: int) -> Decimal:
        each = self.rule.each(self.per_picture, chosen.values, chosen.references)
        return (each * pictures).quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class Route:
    channel_id: int
    channel_name: str
    key_id: int
    priority: int
    weight: int
    inflight_cap: int
    uncertain_submit: str
    upstream_model: str
    upstream_params: dict[str, Any]
    # This channel's spelling of the model's choices (shengtu.pricing.parameters).
    param_map: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    # The breaker: open until then (None: closed); failing: a failure since the last success.
    open_until: datetime | None = None
    failing: bool = False


ProviderFactory = Callable[[Channel, str], Provider]


def _cost_rule(channel: Channel, model: ChannelModel) -> PriceRule:
    try:
        return PriceRule.parse(model.cost_rule)
    except InvalidParameters as exc:
        # Checked when an admin stores it; one changed by hand must not stop the routing.
        log.error("channel_cost_rule_unusable", channel=channel.name, error=str(exc))
        return FLAT


def build_provider(channel: Channel, key: str, pacing: Pacing | None = None) -> Provider:
    spec = PROTOCOLS.get(channel.protocol)
    if spec is None:
        raise ValueError(f"暂不支持的上游协议: {channel.protocol}")
    return spec.provider(
        channel.base_url,
        key,
        timeout=channel.timeout_seconds,
        pacer=(pacing or Pacing()).pacer(key, channel.key_rps),
    )


class ChannelPool:
    def __init__(
        self,
        db: Database,
        box: KeyBox,
        factory: ProviderFactory | None = None,
        *,
        pacing: Pacing | None = None,
    ) -> None:
        self._db = db
        self._box = box
        paced = pacing or Pacing()
        self._factory = factory or (lambda channel, key: build_provider(channel, key, paced))
        self._routes: dict[str, list[Route]] = {}
        # key id → (the sealed key and channel settings it was built from, its provider)
        self._providers: dict[int, tuple[tuple[Any, ...], Provider]] = {}
        self._inflight: dict[int, int] = {}
        # Submits under way per key in this process (``claim``): not in the database yet.
        self._claimed: dict[int, int] = {}
        self._configured: set[str] = set()
        # (channel id, model) → its cost; every channel's, enabled or not: a task it
        # accepted before it was disabled still completes there.
        self._costs: dict[tuple[int, str], Cost] = {}
        self._flat: dict[int, Cost] = {}
        self._loaded_at = -REFRESH_SECONDS
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return
        # Concurrent steps wait for the one read in progress: before it ends the table is
        # empty, and a task polled then would find no provider for its key.
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
                return
            await self._load()
            self._loaded_at = time.monotonic()

    async def _load(self) -> None:
        async with self._db.read() as session:
            channels = list(await session.scalars(select(Channel)))
            keys = list(await session.scalars(select(ChannelKey)))
            models = list(await session.scalars(select(ChannelModel)))
            capped = any(c.key_inflight for c in channels)
            inflight: dict[int, int] = {}
            if capped:
                # Tasks each key holds upstream now, by every worker; between two reads
                # this process adds its own (``started``).
                inflight = {
                    row[0]: int(row[1])
                    for row in await session.execute(
                        select(AiTask.channel_key_id, func.count())
                        .where(
                            AiTask.channel_key_id.is_not(None),
                            AiTask.status.in_(("queued", "processing")),
                        )
                        .group_by(AiTask.channel_key_id)
                    )
                    if row[0] is not None
                }
        by_id = {c.id: c for c in channels}
        providers: dict[int, tuple[tuple[Any, ...], Provider]] = {}
        stale: list[Provider] = []
        for key in keys:
            channel = by_id.get(key.channel_id)
            if channel is None:
                continue
            recipe = (
                key.sealed,
                channel.protocol,
                channel.base_url,
                channel.timeout_seconds,
                channel.key_rps,
            )
            known = self._providers.get(key.id)
            if known is not None and known[0] == recipe:
                providers[key.id] = known
                continue
            if known is not None:
                stale.append(known[1])
            try:
                providers[key.id] = (recipe, self._factory(channel, self._box.open(key.sealed)))
            except ValueError as exc:
                log.error(
                    "channel_key_unusable", channel=channel.name, key_id=key.id, error=str(exc)
                )
        for key_id, (_, provider) in self._providers.items():
            if key_id not in providers:
                stale.append(provider)
        routes: dict[str, list[Route]] = {}
        costs: dict[tuple[int, str], Cost] = {}
        flat = {c.id: Cost(Decimal(c.cost_per_picture or 0)) for c in channels}
        for model in models:
            channel = by_id.get(model.channel_id)
            if channel is None:
                continue
            cost = Cost(flat[channel.id].per_picture, _cost_rule(channel, model))
            costs[(channel.id, model.model_name)] = cost
            if not channel.enabled:
                continue
            for key in keys:
                if key.channel_id != channel.id or not key.enabled or key.id not in providers:
                    continue
                routes.setdefault(model.model_name, []).append(
                    Route(
                        channel_id=channel.id,
                        channel_name=channel.name,
                        key_id=key.id,
                        priority=channel.priority,
                        weight=max(1, channel.weight),
                        inflight_cap=channel.key_inflight,
                        uncertain_submit=channel.uncertain_submit,
                        upstream_model=model.upstream_model,
                        upstream_params=dict(model.upstream_params or {}),
                        param_map=dict(model.param_map or {}),
                        cost=cost,
                        open_until=key.open_until,
                        failing=bool(key.consecutive_failures or key.open_until),
                    )
                )
        self._providers, self._routes = providers, routes
        self._configured = {m.model_name for m in models if m.channel_id in by_id}
        self._inflight = inflight
        self._costs, self._flat = costs, flat
        for provider in stale:
            await provider.aclose()

    def serves(self, model_name: str) -> bool:
        """Whether channels serve the model: then only they do, even when all of them are
        disabled (the upstream of the settings serves only models no channel names)."""
        return model_name in self._configured

    def has_routes(self, model_name: str) -> bool:
        return bool(self._routes.get(model_name))

    def candidates(self, model_name: str) -> list[Route]:
        """The routes to try, in order: highest priority first; within a priority, drawn
        by weight; keys at their in-flight cap or with an open breaker left out (a key whose
        cool-down is over stays in: the caller claims its probe)."""
        by_priority: dict[int, list[Route]] = {}
        now = utcnow()
        for route in self._routes.get(model_name, []):
            if route.inflight_cap and self._held(route.key_id) >= route.inflight_cap:
                continue
            if route.open_until is not None and route.open_until > now:
                continue  # its breaker is open
            by_priority.setdefault(route.priority, []).append(route)
        ordered: list[Route] = []
        for priority in sorted(by_priority, reverse=True):
            pool = list(by_priority[priority])
            while pool:
                # Weighted draw without replacement (secrets are not at stake here).
                pick = random.choices(pool, weights=[r.weight for r in pool])[0]  # noqa: S311
                ordered.append(pick)
                pool.remove(pick)
        return ordered

    def cost_of(self, channel_id: int | None, model_name: str) -> Cost | None:
        """What ``channel_id`` charges the operator for ``model_name``'s pictures, as the
        table says now (a model it no longer serves: its flat cost per picture); None for
        the upstream of the settings, or a channel deleted, whose price is not known."""
        if channel_id is None:
            return None
        return self._costs.get((channel_id, model_name)) or self._flat.get(channel_id)

    def provider(self, key_id: int | None) -> Provider | None:
        if key_id is None:
            return None
        known = self._providers.get(key_id)
        return known[1] if known else None

    def started(self, key_id: int) -> None:
        self._inflight[key_id] = self._inflight.get(key_id, 0) + 1

    def _held(self, key_id: int) -> int:
        return self._inflight.get(key_id, 0) + self._claimed.get(key_id, 0)

    def claim(self, route: Route) -> bool:
        """Whether ``route``'s key may take one more task: if so, it holds it from now
        until ``unclaim`` (its submit ended; ``started`` counts it if accepted). Checked
        and counted in one step, so that tasks submitting at once cannot all pass the cap
        that each saw below it."""
        if route.inflight_cap and self._held(route.key_id) >= route.inflight_cap:
            return False
        self._claimed[route.key_id] = self._claimed.get(route.key_id, 0) + 1
        return True

    def unclaim(self, key_id: int) -> None:
        left = self._claimed.get(key_id, 0) - 1
        if left > 0:
            self._claimed[key_id] = left
        else:
            self._claimed.pop(key_id, None)

    async def aclose(self) -> None:
        for _, provider in self._providers.values():
            await provider.aclose()
        self._providers = {}
