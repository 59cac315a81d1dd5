"""Channels: created, changed and removed by admins; keys sealed before they are stored."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.api.inputs import given_columns
from shengtu.channels.pool import ChannelPool, Route, build_provider
from shengtu.channels.schemas import (
    AttemptOut,
    ChannelCreate,
    ChannelKeyOut,
    ChannelModelIn,
    ChannelOut,
    ChannelSettings,
    ChannelTestOut,
    WindowStats,
)
from shengtu.channels.secrets import KeyBox, mask
from shengtu.config import Settings
from shengtu.db import Conn, Database, add, run, utcnow
from shengtu.errors import BadRequest, Conflict, NotFound
from shengtu.logs import get_logger
from shengtu.models.catalog import PointsConfig
from shengtu.models.channels import Channel, ChannelKey, ChannelModel, TaskAttempt
from shengtu.models.tasks import ACTIVE, AiTask
from shengtu.pricing.parameters import CHOICE_NAMES, InvalidParameters
from shengtu.pricing.rules import PriceRule
from shengtu.providers.base import UpstreamError
from shengtu.providers.registry import PROTOCOLS
from shengtu.timefmt import fmt

log = get_logger("shengtu.channels")

_SETTING_COLUMNS = {
    "name": "name",
    "baseUrl": "base_url",
    "priority": "priority",
    "weight": "weight",
    "keyRps": "key_rps",
    "keyInflight": "key_inflight",
    "timeoutSeconds": "timeout_seconds",
    "costPerPicture": "cost_per_picture",
    "uncertainSubmit": "uncertain_submit",
    "enabled": "enabled",
}


def _check_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("参数错误:baseUrl 须为 http:// 或 https:// 开头的地址")
    return url.strip().rstrip("/")


def _check_key(key: str) -> str:
    key = key.strip()
    if not 8 <= len(key) <= 512 or any(ch.isspace() or ord(ch) < 32 for ch in key):
        raise BadRequest("参数错误:上游密钥须为 8-512 个非空白字符")
    return key


def _check_param_map(model_name: str, param_map: dict[str, Any]) -> None:
    """A channel's spelling of a model's choices: per choice an object with an optional
    ``upstream`` field name and an optional ``map`` of value to spelling, as a model's
    own choice gives them (:meth:`shengtu.pricing.parameters.Parameters.upstream_fields`)."""
    where = f"参数错误:模型 {model_name[:64]} 的 paramMap"
    for name, spec in param_map.items():
        if name not in CHOICE_NAMES:
            raise BadRequest(
                f"{where} 中的 {name[:32]} 不是可选参数,只能是 {', '.join(CHOICE_NAMES)}"
            )
        if not isinstance(spec, dict):
            raise BadRequest(f"{where}.{name} 必须是 JSON 对象")
        unknown = set(spec) - {"upstream", "map"}
        if unknown:
            raise BadRequest(f"{where}.{name} 中有未知字段:{', '.join(sorted(unknown))[:64]}")
        upstream = spec.get("upstream")
        if upstream is not None and (not isinstance(upstream, str) or not upstream):
            raise BadRequest(f"{where}.{name}.upstream 必须是字段名")
        spellings = spec.get("map")
        if spellings is not None and (
            not isinstance(spellings, dict)
            or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool)
                for v in spellings.values()
            )
        ):
            raise BadRequest(f"{where}.{name}.map 必须是 {{取值: 上游写法}} 的 JSON 对象")


def _check_cost_rule(model_name: str, cost_rule: dict[str, Any]) -> PriceRule:
    try:
        return PriceRule.parse(cost_rule)
    except InvalidParameters as exc:
        raise BadRequest(f"参数错误:模型 {model_name[:64]} 的 costRule:{exc}") from exc


async def _check_models(session: AsyncSession, models: list[ChannelModelIn]) -> None:
    names = [m.modelName for m in models]
    if len(set(names)) != len(names):
        raise BadRequest("参数错误:同一渠道的模型不能重复")
    for m in models:
        _check_param_map(m.modelName, m.paramMap)
        _check_cost_rule(m.modelName, m.costRule)
    known = set(
        await session.scalars(
            select(PointsConfig.model_name).where(PointsConfig.model_name.in_(names))
        )
    )
    missing = [n for n in names if n not in known]
    if missing:
        raise BadRequest(f"参数错误:模型 {missing[0][:64]} 不在模型目录中")


async def _tasks_in_flight(session: AsyncSession, taken_by: ColumnElement[bool]) -> int:
    """Unfinished tasks that a channel or key took: they are polled through it."""
    count = await session.scalar(
        select(func.count())
        .select_from(AiTask)
        .where(taken_by, AiTask.status.in_([s.value for s in ACTIVE]))
    )
    return int(count or 0)


async def get_channel(session: AsyncSession, channel_id: int) -> Channel:
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"渠道 {channel_id} 不存在")
    return channel


_COUNTED = ("accepted", "failed", "uncertain")


async def _percentile(
    session: AsyncSession, where: Sequence[ColumnElement[bool]], count: int, q: float
) -> float | None:
    """The q-quantile of the latencies, by rank (nearest rank): portable to every dialect,
    and over the index on (key_id, started_at) it reads only the window's rows."""
    if not count:
        return None
    rank = max(0, math.ceil(q * count) - 1)
    value = await session.scalar(
        select(TaskAttempt.latency_ms)
        .where(*where)
        .order_by(TaskAttempt.latency_ms)
        .offset(rank)
        .limit(1)
    )
    return None if value is None else round(float(value), 1)


async def _outcome_counts(
    session: AsyncSession, where: Sequence[ColumnElement[bool]]
) -> dict[str, int]:
    return {
        outcome: int(n)
        for outcome, n in await session.execute(
            select(TaskAttempt.outcome, func.count()).where(*where).group_by(TaskAttempt.outcome)
        )
    }


async def window_stats(
    session: AsyncSession, owner: ColumnElement[bool], since: datetime
) -> WindowStats:
    where = [owner, TaskAttempt.started_at >= since]
    counts = await _outcome_counts(session, where)
    counted = sum(counts.get(o, 0) for o in _COUNTED)
    timed = [*where, TaskAttempt.outcome.in_(_COUNTED)]
    return WindowStats(
        attempts=sum(counts.values()),
        accepted=counts.get("accepted", 0),
        failed=counts.get("failed", 0),
        uncertain=counts.get("uncertain", 0),
        successRate=round(counts.get("accepted", 0) / counted, 4) if counted else None,
        p50Ms=await _percentile(session, timed, counted, 0.5),
        p95Ms=await _percentile(session, timed, counted, 0.95),
    )


async def _windows(
    session: AsyncSession, owner: ColumnElement[bool], now: datetime
) -> tuple[WindowStats, WindowStats]:
    return (
        await window_stats(session, owner, now - timedelta(hours=1)),
        await window_stats(session, owner, now - timedelta(days=1)),
    )


async def _key_out(session: AsyncSession, key: ChannelKey, now: datetime, tz: str) -> ChannelKeyOut:
    hour, day = await _windows(session, TaskAttempt.key_id == key.id, now)
    breaker: Literal["closed", "open", "probe"] = "closed"
    if key.open_until is not None:
        breaker = "open" if key.open_until > now else "probe"
    return ChannelKeyOut(
        id=key.id,
        key=key.hint,
        enabled=key.enabled,
        disabledReason=key.disabled_reason,
        breaker=breaker,
        consecutiveFailures=key.consecutive_failures,
        openUntil=fmt(key.open_until, tz),
        lastError=key.last_error,
        lastErrorTime=fmt(key.last_error_at, tz),
        lastHour=hour,
        lastDay=day,
    )


async def describe(session: AsyncSession, channel: Channel, tz: str) -> ChannelOut:
    now = utcnow()
    keys = await session.scalars(
        select(ChannelKey).where(ChannelKey.channel_id == channel.id).order_by(ChannelKey.id)
    )
    models = await session.scalars(
        select(ChannelModel).where(ChannelModel.channel_id == channel.id).order_by(ChannelModel.id)
    )
    key_outs = [await _key_out(session, k, now, tz) for k in keys]
    hour, day = await _windows(session, TaskAttempt.channel_id == channel.id, now)
    return ChannelOut(
        id=channel.id,
        name=channel.name,
        protocol=channel.protocol,
        baseUrl=channel.base_url,
        priority=channel.priority,
        weight=channel.weight,
        keyRps=channel.key_rps,
        keyInflight=channel.key_inflight,
        timeoutSeconds=channel.timeout_seconds,
        costPerPicture=str(Decimal(channel.cost_per_picture).quantize(Decimal("0.0001"))),
        uncertainSubmit=channel.uncertain_submit,
        uncertainCount=channel.uncertain_count,
        lateCount=channel.late_count,
        enabled=channel.enabled,
        keys=key_outs,
        models=[
            ChannelModelIn(
                modelName=m.model_name,
                upstreamModel=m.upstream_model,
                upstreamParams=dict(m.upstream_params or {}),
                paramMap=dict(m.param_map or {}),
                costRule=dict(m.cost_rule or {}),
            )
            for m in models
        ],
        createTime=fmt(channel.created_at, tz) or "",
        updateTime=fmt(channel.updated_at, tz) or "",
        lastHour=hour,
        lastDay=day,
    )


async def list_channels(session: AsyncSession) -> list[Channel]:
    return list(
        await session.scalars(select(Channel).order_by(Channel.priority.desc(), Channel.id))
    )


def _add_keys(session: AsyncSession, box: KeyBox, channel_id: int, keys: list[str]) -> None:
    for raw in keys:
        key = _check_key(raw)
        session.add(ChannelKey(channel_id=channel_id, sealed=box.seal(key), hint=mask(key)))


def _set_models(session: AsyncSession, channel_id: int, models: list[ChannelModelIn]) -> None:
    for m in models:
        session.add(
            ChannelModel(
                channel_id=channel_id,
                model_name=m.modelName,
                upstream_model=m.upstreamModel,
                upstream_params=m.upstreamParams,
                param_map=m.paramMap or None,
                # Kept as the rule reads it back: one spelling for the same rule.
                cost_rule=_check_cost_rule(m.modelName, m.costRule).to_json() or None,
            )
        )


async def create(session: AsyncSession, box: KeyBox, body: ChannelCreate) -> Channel:
    if not body.addKeys:
        raise BadRequest("参数错误:渠道至少需要一个上游密钥(addKeys)")
    await _check_models(session, body.models)
    values: dict[str, Any] = given_columns(body, _SETTING_COLUMNS)
    values["base_url"] = _check_base_url(body.baseUrl)
    spec = PROTOCOLS[body.protocol]
    if body.timeoutSeconds is None and spec.default_timeout is not None:
        values["timeout_seconds"] = spec.default_timeout
    if body.keyInflight is None and spec.default_key_inflight is not None:
        values["key_inflight"] = spec.default_key_inflight
    channel = Channel(protocol=body.protocol, **values)
    session.add(channel)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"渠道名称 {body.name} 已存在") from exc
    _add_keys(session, box, channel.id, body.addKeys)
    _set_models(session, channel.id, body.models)
    await session.flush()
    return channel


async def change(
    session: AsyncSession, box: KeyBox, channel_id: int, body: ChannelSettings
) -> Channel:
    channel = await get_channel(session, channel_id)
    values: dict[str, Any] = given_columns(body, _SETTING_COLUMNS)
    if "base_url" in values:
        values["base_url"] = _check_base_url(values["base_url"])
    if body.models is not None:
        if not body.models:
            raise BadRequest("参数错误:渠道至少需要服务一个模型")
        await _check_models(session, body.models)
    if body.removeKeyIds:
        owned = set(
            await session.scalars(
                select(ChannelKey.id).where(
                    ChannelKey.channel_id == channel.id, ChannelKey.id.in_(body.removeKeyIds)
                )
            )
        )
        if owned != set(body.removeKeyIds):
            raise BadRequest("参数错误:removeKeyIds 中有不属于该渠道的密钥")
        busy = await _tasks_in_flight(session, AiTask.channel_key_id.in_(owned))
        if busy:
            raise Conflict(f"要删除的密钥仍有 {busy} 个进行中的任务:请先停用,等任务结束后再删除")
        await session.execute(delete(ChannelKey).where(ChannelKey.id.in_(owned)))
    _add_keys(session, box, channel.id, body.addKeys)
    left = await session.scalar(
        select(func.count()).select_from(ChannelKey).where(ChannelKey.channel_id == channel.id)
    )
    if not left:
        raise BadRequest("参数错误:渠道至少需要一个上游密钥")
    if body.models is not None:
        await session.execute(delete(ChannelModel).where(ChannelModel.channel_id == channel.id))
        _set_models(session, channel.id, body.models)
    values["updated_at"] = utcnow()
    try:
        await session.execute(update(Channel).where(Channel.id == channel.id).values(**values))
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"渠道名称 {body.name} 已存在") from exc
    await session.refresh(channel)
    return channel


async def set_key_enabled(
    session: AsyncSession, channel_id: int, key_id: int, enabled: bool, reason: str | None = None
) -> None:
    result = await session.execute(
        update(ChannelKey)
        .where(ChannelKey.id == key_id, ChannelKey.channel_id == channel_id)
        .values(
            enabled=enabled, disabled_reason=None if enabled else (reason or "管理员停用")[:255]
        )
    )
    if getattr(result, "rowcount", 0) != 1:
        raise NotFound(f"渠道 {channel_id} 没有密钥 {key_id}")


async def remove(session: AsyncSession, channel_id: int) -> None:
    channel = await get_channel(session, channel_id)
    busy = await _tasks_in_flight(session, AiTask.channel_id == channel.id)
    if busy:
        raise Conflict(f"渠道仍有 {busy} 个进行中的任务:请先停用,等任务结束后再删除")
    await session.execute(delete(ChannelKey).where(ChannelKey.channel_id == channel.id))
    await session.execute(delete(ChannelModel).where(ChannelModel.channel_id == channel.id))
    await session.execute(delete(Channel).where(Channel.id == channel.id))


async def count(
    session: AsyncSession, channel_id: int, counter: Literal["uncertain_count", "late_count"]
) -> None:
    """One more on a channel's counter (uncertain submits, late results)."""
    column = getattr(Channel, counter)
    await session.execute(
        update(Channel).where(Channel.id == channel_id).values({counter: column + 1})
    )


async def disable_key_for(session: AsyncSession, key_id: int, reason: str) -> None:
    """The upstream refused the key itself (401/403, balance exhausted): until an admin
    enables it again, no task goes to it."""
    await session.execute(
        update(ChannelKey)
        .where(ChannelKey.id == key_id, ChannelKey.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:255])
    )


async def first_enabled_key(session: AsyncSession, channel_id: int) -> ChannelKey | None:
    key: ChannelKey | None = await session.scalar(
        select(ChannelKey)
        .where(ChannelKey.channel_id == channel_id, ChannelKey.enabled.is_(True))
        .order_by(ChannelKey.id)
        .limit(1)
    )
    return key


async def probe(db: Database, box: KeyBox, channel_id: int) -> ChannelTestOut:
    """Asks the upstream, through the channel's first enabled key, about a job that does not
    exist: an answer proves the address and the key, and starts no paid job."""
    async with db.read() as session:
        channel = await get_channel(session, channel_id)
        key = await first_enabled_key(session, channel_id)
    if key is None:
        return ChannelTestOut(ok=False, latencyMs=0.0, message="渠道没有启用的密钥")
    provider = build_provider(channel, box.open(key.sealed))
    started = time.perf_counter()
    try:
        await provider.check()
        ok, message = True, "上游可达,密钥有效"
    except UpstreamError as exc:
        ok, message = False, exc.message
    finally:
        await provider.aclose()
    latency = round((time.perf_counter() - started) * 1000, 1)
    return ChannelTestOut(ok=ok, latencyMs=latency, message=message)


async def key_failed(
    session: AsyncSession, key_id: int, error: str, settings: Settings, *, probe: bool = False
) -> bool:
    """One more failure in a row for the key; True when this one opened its breaker.

    ``probe``: this was the one try let through after a cool-down; its failure opens the
    breaker again for twice as long. A failure while the breaker is open is a try sent
    before it opened (concurrent steps): counted, but it neither extends nor doubles the
    cool-down, or a burst of stragglers would push it to its maximum at once.
    """
    key = await session.get(ChannelKey, key_id, with_for_update=True)
    if key is None:
        return False
    now = utcnow()
    key.consecutive_failures += 1
    key.last_error, key.last_error_at = error[:255], now
    if probe:
        cooldown = key.cooldown_seconds * 2 if key.cooldown_seconds else 0.0
    elif key.open_until is not None and key.open_until > now:
        return False
    elif await _tripped(session, key, now, settings):
        cooldown = key.cooldown_seconds
    else:
        return False
    key.cooldown_seconds = min(
        settings.breaker_max_cooldown_seconds, cooldown or settings.breaker_cooldown_seconds
    )
    key.open_until = now + timedelta(seconds=key.cooldown_seconds)
    return True


async def _tripped(
    session: AsyncSession, key: ChannelKey, now: datetime, settings: Settings
) -> bool:
    """Whether a closed breaker opens: failures in a row, or, over the window, an error rate
    at the threshold among enough tries. (A failed probe reopens it without asking.)"""
    if key.consecutive_failures >= settings.breaker_failures:
        return True
    counts = await _outcome_counts(
        session,
        [
            TaskAttempt.key_id == key.id,
            TaskAttempt.started_at >= now - timedelta(seconds=settings.breaker_window_seconds),
        ],
    )
    tries = sum(counts.get(o, 0) for o in _COUNTED)
    failures = counts.get("failed", 0) + counts.get("uncertain", 0)
    return (
        tries >= settings.breaker_min_attempts and failures >= settings.breaker_error_rate * tries
    )


_KEY_SUCCEEDED = (
    update(ChannelKey)
    .where(
        ChannelKey.id == bindparam("key_id"),
        or_(ChannelKey.consecutive_failures > 0, ChannelKey.open_until.is_not(None)),
    )
    .values(consecutive_failures=0, open_until=None, cooldown_seconds=0.0)
)


async def key_succeeded(session: Conn, key_id: int) -> None:
    await run(session, _KEY_SUCCEEDED, {"key_id": key_id})


async def claim_probe(
    session: AsyncSession, key_id: int, seen_open_until: datetime, hold_seconds: float
) -> bool:
    """Of the workers that saw the key's cool-down end, the one whose UPDATE still finds
    ``open_until`` as it saw it sends the probe; it holds the breaker open meanwhile."""
    now = utcnow()
    if seen_open_until > now:
        return False
    result = await session.execute(
        update(ChannelKey)
        .where(ChannelKey.id == key_id, ChannelKey.open_until == seen_open_until)
        .values(open_until=now + timedelta(seconds=hold_seconds))
    )
    return getattr(result, "rowcount", 0) == 1


# -- a submit attempt's outcome, one call each (shengtu.tasks.relay) -----------------


async def take_probe(db: Database, route: Route, hold_seconds: float) -> bool:
    """Whether this task sends the probe of ``route``'s key, whose cool-down is over
    (:func:`claim_probe`, in a transaction of its own)."""
    assert route.open_until is not None
    async with db.write() as session:
        won = await claim_probe(session, route.key_id, route.open_until, hold_seconds)
    if won:
        log.info("channel_probe", channel=route.channel_name, key_id=route.key_id)
    return won


# Statements for the transaction that records an accepted submit.
OnAccepted = Callable[[Conn], Awaitable[None]]


def submit_accepted(pool: ChannelPool, route: Route | None) -> OnAccepted | None:
    """The upstream accepted a submit through ``route`` (None: the upstream of the
    settings): counted in flight on its key at once; the statements returned reset the
    key's breaker, in the transaction that records the acceptance, if that one wins."""
    if route is None:
        return None
    pool.started(route.key_id)
    key_id = route.key_id

    async def succeeded(session: Conn) -> None:
        # Always, not only when the routing table says the key is failing: the table
        # may be a second old, and "in a row" must end at every success.
        await key_succeeded(session, key_id)

    return succeeded


async def submit_failed(
    db: Database,
    pool: ChannelPool,
    route: Route | None,
    attempt: TaskAttempt,
    exc: UpstreamError,
    settings: Settings,
    *,
    probe: bool = False,
) -> None:
    """A submit through ``route`` (None: the upstream of the settings) that failed: its
    attempt recorded; a failure of the upstream (not a refusal of the task, nor of the
    key) counts towards the key's breaker; an answer lost is counted on the channel; a key
    the upstream refused is disabled. Each in a transaction of its own. An answer lost is
    counted apart (:func:`count_uncertain`), once the relay has said so in its log."""
    opened = False
    async with db.write() as session:
        await add(session, attempt)
        if route is not None and attempt.outcome in ("failed", "uncertain"):
            opened = await key_failed(session, route.key_id, exc.message, settings, probe=probe)
    if route is None:
        return
    if opened:
        log.warning(
            "channel_breaker_opened",
            channel=route.channel_name,
            key_id=route.key_id,
            reason=exc.message,
        )
        # This worker's next submit skips the key at once; the others within a second.
        await pool.refresh(force=True)
    if exc.key_rejected:
        log.error(
            "channel_key_disabled",
            channel=route.channel_name,
            key_id=route.key_id,
            reason=exc.message,
        )
        async with db.write() as session:
            await disable_key_for(session, route.key_id, exc.message)
        await pool.refresh(force=True)


async def count_uncertain(db: Database, route: Route | None) -> None:
    """A submit through ``route`` whose answer never came: the upstream may have a job,
    paid for; counted on the channel."""
    if route is not None:
        async with db.write() as session:
            await count(session, route.channel_id, "uncertain_count")


async def attempts_of(session: AsyncSession, task_no: str, tz: str) -> list[AttemptOut]:
    task_id = await session.scalar(select(AiTask.id).where(AiTask.task_no == task_no))
    if task_id is None:
        raise NotFound(f"任务 {task_no[:40]} 不存在")
    rows = await session.execute(
        select(TaskAttempt, Channel.name)
        .outerjoin(Channel, Channel.id == TaskAttempt.channel_id)
        .where(TaskAttempt.task_id == task_id)
        .order_by(TaskAttempt.id)
    )
    return [
        AttemptOut(
            channelId=a.channel_id,
            channelName=name,
            keyId=a.key_id,
            outcome=a.outcome,
            httpStatus=a.http_status,
            latencyMs=a.latency_ms,
            error=a.error,
            startTime=fmt(a.started_at, tz) or "",
            endTime=fmt(a.ended_at, tz) or "",
        )
        for a, name in rows
    ]
