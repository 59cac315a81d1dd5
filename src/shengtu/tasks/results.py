"""What the upstream makes of an accepted task: polled until it ends, and its picture
downloaded (through the SSRF guard, within the task's deadline and the rate floor),
checked whole, labelled as AI-made (``safety.labels``) and stored under our own permanent
URL."""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from shengtu.channels.pool import Cost
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.exchanges.service import ExchangeRecorder
from shengtu.models.tasks import AiTask, Status
from shengtu.pricing.parameters import Chosen
from shengtu.providers.base import Provider, UpstreamError, UpstreamState
from shengtu.safety.labels import Label, Labeller, labelled
from shengtu.storage.base import Stored
from shengtu.storage.fetch import FetchError, fetch_image_bytes
from shengtu.storage.images import NotAnImage
from shengtu.tasks.deadlines import by_deadline, download_overran, seconds_left
from shengtu.tasks.moves import Moves
from shengtu.tasks.review import (
    DENIED,
    EXPIRED,
    HeldPicture,
    held_columns,
    held_event,
    hold_event,
    judge,
    pictures_of,
)
from shengtu.timefmt import local

QUEUED_PROGRESS = 5


@dataclass(frozen=True, slots=True)
class Delivered:
    """A picture stored for a task, and the upstream's address of it (None: inline)."""

    key: str
    upstream_url: str | None = None
    # The picture itself, kept only while the moderation service is to see it.
    picture: bytes | None = None


def pack_urls(urls: tuple[str, ...]) -> str:
    """The result addresses an upstream answered a submit with, in one column: the one
    address as it is, several as a JSON array (:func:`unpack_urls`)."""
    return urls[0] if len(urls) == 1 else json.dumps(list(urls))


def unpack_urls(packed: str) -> tuple[str, ...]:
    if packed.startswith("["):
        return tuple(str(u) for u in json.loads(packed))
    return (packed,)


def operator_cost(task: AiTask, cost: Cost | None, pictures: int) -> Decimal | None:
    """What ``pictures`` delivered of ``task`` cost the operator at its channel's ``cost``
    for the values it chose; None for the upstream of the settings, whose price is not
    known."""
    return None if cost is None else cost.of(Chosen.from_json(task.params), pictures)


def usage_of(state: UpstreamState) -> dict[str, Any]:
    """The column of the upstream's usage figures, where this answer has them."""
    return {} if state.usage is None else {"upstream_usage": state.usage}


def estimate_progress(task: AiTask, reported: int | None, now: datetime, expected: float) -> int:
    """Upstream's own figure when it gives one, else an estimate from the time elapsed.

    Never goes backwards and never reaches 100 before the picture is stored.
    """
    if reported is not None:
        value = reported
    else:
        elapsed = (now - (task.submitted_at or task.created_at)).total_seconds()
        value = int(10 + 89 * (1 - math.exp(-max(0.0, elapsed) / expected)))
    return max(task.progress, min(99, value))


def download_bounds(settings: Settings, total: float | None) -> dict[str, Any]:
    """A download's bounds: ``total`` seconds, and the settings' floor on its rate."""
    return {
        "total_seconds": total,
        "min_bytes_per_second": settings.fetch_min_bytes_per_second,
        "rate_window_seconds": settings.fetch_rate_grace_seconds,
    }


async def provider_of(ctx: AppContext, task: AiTask) -> Provider | None:
    """The provider a task the upstream accepted is polled through."""
    if task.channel_key_id is not None:
        await ctx.channels.refresh()
        return ctx.channels.provider(task.channel_key_id)
    return ctx.providers.get(task.provider)


class Results:
    """Polls and result copies; downloads on ``http``, a connection pool of its own; the
    exchanges of both kept by ``exchanges``."""

    def __init__(
        self, ctx: AppContext, moves: Moves, http: httpx.AsyncClient, exchanges: ExchangeRecorder
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.moves = moves
        self._http = http
        self.exchanges = exchanges
        self.labels = Labeller(ctx.settings)

    async def poll(self, task: AiTask, provider: Provider) -> None:
        assert task.upstream_id is not None
        moves = self.moves
        try:
            with self.exchanges.recording(
                task, "poll", channel_id=task.channel_id, key_id=task.channel_key_id
            ):
                async with by_deadline(task, self.settings):
                    state = await provider.poll(task.upstream_id, task.task_no)
        except UpstreamError as exc:
            if exc.transient:
                await moves.retry(task, exc.message, exc.retry_after)
            else:
                await moves.fail(task, f"查询上游任务失败:{exc.message}")
            return
        now = utcnow()
        common: dict[str, Any] = {
            "upstream_status": state.raw_status,
            "poll_count": task.poll_count + 1,
            **usage_of(state),
        }
        if state.phase == "failed":
            await moves.fail(task, state.error or "上游生成失败,未说明原因", **common)
        elif state.phase == "succeeded":
            await self.store_result(task, provider, state, common)
        else:
            target = Status.QUEUED if state.phase == "queued" else Status.PROCESSING
            if task.status == Status.PROCESSING:
                target = Status.PROCESSING  # never back to queued on a stale answer
            progress = (
                max(task.progress, QUEUED_PROGRESS)
                if target is Status.QUEUED
                else estimate_progress(task, state.progress, now, self.settings.expected_duration)
            )
            await moves.move(
                task,
                target,
                progress=progress,
                attempts=0,
                last_error=None,
                next_run_at=moves.clamp(task, now + timedelta(seconds=self.settings.poll_interval)),
                **common,
            )

    async def store_result(
        self, task: AiTask, provider: Provider, state: UpstreamState, common: dict[str, Any]
    ) -> None:
        """The finished pictures copied and the task completed with those that arrived
        whole (the rest refunded in the same move); a failed copy retried while tries are
        left, else the task fails. Nothing stored outlives a task that did not complete."""
        moves = self.moves
        inline = state.pictures[: task.pictures]
        urls = state.result_urls[: task.pictures - len(inline)]
        stored: list[Delivered] = []
        spoiled: NotAnImage | None = None
        reviewed = self.ctx.moderation.checks_pictures
        try:
            # Pictures that came inline in the answer (即梦's base64): stored as they are.
            for picture in inline:
                try:
                    key = (await self.store(task, picture)).key
                except NotAnImage as exc:
                    spoiled = exc
                    continue
                stored.append(Delivered(key, None, picture if reviewed else None))
            for url in urls:
                try:
                    data = await self.download(task, url, provider, seconds_left(task))
                    key = (await self.store(task, data)).key
                except NotAnImage as exc:
                    spoiled = exc
                    continue
                stored.append(Delivered(key, url, data if reviewed else None))
        except FetchError as exc:
            await self._discard(stored)
            if exc.out_of_time:
                raise download_overran("结果图片", self.settings) from exc
            if exc.transient and task.attempts + 1 < self.settings.download_attempts:
                await moves.retry(task, exc.message, None)
            else:
                await moves.fail(task, f"结果图片转存失败:{exc.message}", **common)
            return
        except BaseException:
            await self._discard(stored)
            raise
        if not stored:
            await moves.fail(task, f"上游返回的结果不是有效图片:{spoiled}", **common)
            return
        if reviewed:
            await self.reviewed(task, stored, **common)
            return
        await self.complete(task, stored, last_error=None, **common)

    async def reviewed(self, task: AiTask, stored: list[Delivered], **values: Any) -> None:
        """``stored`` shown to the moderation service first: delivered, the refused ones
        deleted (the task failed and refunded if none is left), or all held for the
        operator (:mod:`shengtu.tasks.review`)."""
        moderation = self.ctx.moderation
        try:
            verdicts = await moderation.check_pictures([(d.picture or b"", d.key) for d in stored])
        except BaseException:
            await self._discard(stored)
            raise
        judgement = judge(verdicts, fail_open=moderation.fail_open, holds=moderation.holds)
        if judgement.hold:
            held = [
                HeldPicture(d.key, d.upstream_url, v.flagged)
                for d, v in zip(stored, verdicts, strict=True)
            ]
            moved = False
            try:
                moved = await self.moves.move(
                    task,
                    Status.PROCESSING,
                    also=(hold_event(task, held, verdicts),),
                    **{**values, **held_columns(utcnow(), moderation.hold_seconds)},
                )
            finally:
                if not moved:
                    await self._discard(stored)
            return
        if judgement.failure is not None:
            await self._discard(stored)
            await self.moves.fail(task, judgement.failure, **values)
            return
        await self._discard([stored[i] for i in judgement.refused])
        await self.complete(task, [stored[i] for i in judgement.kept], last_error=None, **values)

    async def settle_held(self, task: AiTask) -> None:
        """A held task's turn: the operator's decision carried out, or the hold ended
        at its deadline (failed and refunded); else it waits on."""
        event = await held_event(self.ctx.db, task.task_no)
        held = pictures_of(event) if event is not None else []
        decision = event.decision if event is not None else None
        if decision is None and utcnow() < task.deadline_at and event is not None:
            await self.moves.move(task, Status(task.status), next_run_at=task.deadline_at)
            return
        delivered = [Delivered(p.key, p.upstream_url) for p in held]
        if decision == "approve":
            await self.complete(task, delivered, last_error=None)
            return
        kept = [d for d, p in zip(delivered, held, strict=True) if not p.flagged]
        refused = [d for d, p in zip(delivered, held, strict=True) if p.flagged]
        if decision == "deny" and kept:
            await self._discard(refused)
            await self.complete(task, kept, last_error=None)
            return
        if await self.moves.move(
            task, Status.FAILED, error_message=DENIED if decision == "deny" else EXPIRED
        ):
            await self._discard(delivered)

    async def complete(self, task: AiTask, stored: list[Delivered], **values: Any) -> bool:
        """Complete ``task`` with the pictures ``stored`` (fewer than it asked: the rest
        refunded in the move); when the move does not happen (another worker owns the
        task now, or the write failed), the pictures are deleted: no picture without its
        task."""
        moved = False
        try:
            cost = self.ctx.channels.cost_of(task.channel_id, task.model_name)
            columns = {
                **self.delivered(task, stored),
                "cost": operator_cost(task, cost, len(stored)),
                **values,
            }
            moved = await self.moves.move(task, Status.COMPLETED, **columns)
        finally:
            if not moved:
                await self._discard(stored)
        return moved

    def delivered(self, task: AiTask, stored: list[Delivered]) -> dict[str, Any]:
        """The columns of a completion of ``task`` with ``stored`` pictures (the first is
        the spec's ``resultUrl``), and the labels they carry."""
        first = stored[0]
        columns: dict[str, Any] = {
            "result_url": self.ctx.storage.url(first.key),
            "result_key": first.key,
            "delivered": len(stored),
            "labels": self.label(task).carried(),
        }
        if first.upstream_url is not None:
            columns["upstream_result_url"] = first.upstream_url
        if len(stored) > 1:
            columns["results"] = [
                {"url": self.ctx.storage.url(d.key), "key": d.key} for d in stored
            ]
        return columns

    async def _discard(self, stored: list[Delivered]) -> None:
        for picture in stored:
            await self.ctx.storage.delete(picture.key)

    async def fetch(self, task: AiTask, url: str, provider: Provider, seconds: float) -> Stored:
        """The upstream's picture, downloaded through the SSRF guard within ``seconds``
        and the rate floor, checked and stored. The download is kept among the task's
        exchanges: its address and outcome, not the picture."""
        return await self.store(task, await self.download(task, url, provider, seconds))

    async def download(self, task: AiTask, url: str, provider: Provider, seconds: float) -> bytes:
        """The upstream's picture, downloaded (not yet checked) and kept among the task's
        exchanges."""
        at, clock = utcnow(), time.perf_counter()
        try:
            fetched = await fetch_image_bytes(
                self._http,
                url,
                max_bytes=self.settings.max_result_bytes,
                trusted_origins=provider.trusted_origins,
                **download_bounds(self.settings, seconds),
            )
        except FetchError as exc:
            self.exchanges.download(task, provider, url, at, clock, error=exc.message)
            raise
        self.exchanges.download(task, provider, url, at, clock, size=len(fetched.data))
        return fetched.data

    def label(self, task: AiTask) -> Label:
        return self.labels.label(task.task_no, task.model_name)

    async def store(self, task: AiTask, picture: bytes) -> Stored:
        """``picture`` checked whole, labelled and stored as ``task``'s result (NotAnImage
        if it is no picture)."""
        return await self.ctx.storage.put_checked(
            picture,
            labelled(self.settings.max_image_pixels, self.label(task)),
            lambda info: self._key(task, info.ext),
            self.ctx.decoding,
        )

    def _key(self, task: AiTask, ext: str) -> str:
        day = local(task.created_at, self.settings.timezone)
        # The random part keeps one user from guessing another's picture from a task number.
        return f"results/{day:%Y/%m/%d}/{task.task_no}-{secrets.token_hex(8)}.{ext}"
