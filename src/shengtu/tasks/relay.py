"""A created task sent upstream: routed to a channel (priority, then weight, skipping open
breakers), failed over only while no upstream job can exist, every attempt a row; and a
user's cancel passed on to the upstream that has the job."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from shengtu import metrics
from shengtu.channels import service as channel_service
from shengtu.channels.pool import Route
from shengtu.context import AppContext
from shengtu.db import add, utcnow
from shengtu.exchanges.service import ExchangeRecorder
from shengtu.logs import get_logger
from shengtu.models.channels import TaskAttempt
from shengtu.models.tasks import AiTask, Status
from shengtu.pricing.parameters import NONE, Chosen
from shengtu.providers.base import Cancellable, Provider, UpstreamError, UpstreamJob, UpstreamState
from shengtu.storage.fetch import FetchError, fetch_image_bytes
from shengtu.storage.images import NotAnImage, sniff_image
from shengtu.tasks.deadlines import (
    Overran,
    by_deadline,
    download_overran,
    hold_off_step_bound,
    seconds_left,
)
from shengtu.tasks.machine import move
from shengtu.tasks.moves import Moves
from shengtu.tasks.results import (
    QUEUED_PROGRESS,
    Delivered,
    Results,
    download_bounds,
    operator_cost,
    pack_urls,
    usage_of,
)
from shengtu.tasks.review import HeldPicture, held_columns, hold_event, judge

log = get_logger("shengtu.worker")


def attempt_row(
    task: AiTask,
    route: Route | None,
    outcome: str,
    started: datetime,
    clock: float,
    exc: UpstreamError | None = None,
) -> TaskAttempt:
    latency = time.perf_counter() - clock
    metrics.upstream_attempt(route.channel_id if route else None, outcome, latency)
    return TaskAttempt(
        task_id=task.id,
        channel_id=route.channel_id if route else None,
        key_id=route.key_id if route else None,
        outcome=outcome,
        http_status=exc.http_status if exc else None,
        latency_ms=round(latency * 1000, 1),
        error=exc.message[:500] if exc else None,
        started_at=started,
        ended_at=utcnow(),
    )


def _outcome(exc: UpstreamError) -> str:
    """A failed attempt as its row records it."""
    if exc.uncertain:
        return "uncertain"
    if exc.key_rejected:
        return "key_rejected"
    return "failed" if exc.transient else "refused"


class Relay:
    """Submits and cancels; reference pictures fetched on ``references``, a connection
    pool of its own; the upstream exchanges kept by ``exchanges``."""

    def __init__(
        self,
        ctx: AppContext,
        moves: Moves,
        results: Results,
        references: httpx.AsyncClient,
        exchanges: ExchangeRecorder,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.moves = moves
        self.results = results
        self._references = references
        self.exchanges = exchanges

    def _routes(self, task: AiTask) -> list[Route | None]:
        """Where to send the task, in order: the channels that serve its model, or, where
        none does, the upstream of the settings (``None``: the key or the sandbox)."""
        pool = self.ctx.channels
        if pool.serves(task.model_name):
            return list(pool.candidates(task.model_name))
        return [None] if task.provider in self.ctx.providers else []

    async def _upstream_params(self, task: AiTask, route: Route | None) -> dict[str, Any]:
        """The upstream's fields for ``task``: the task's own (the model's, with its chosen
        values as the model spells them), or the route's with the chosen values as that
        channel spells them."""
        if route is None:
            return dict(task.upstream_params or {})
        chosen = Chosen.from_json(task.params)
        model = await self.ctx.catalog.get(task.model_name) if task.params else None
        parameters = model.parameters if model is not None else NONE
        return {
            **route.upstream_params,
            **parameters.upstream_fields(chosen, route.param_map),
        }

    async def submit(self, task: AiTask) -> None:
        await self.ctx.channels.refresh()
        routes = self._routes(task)
        if not routes:
            if self.ctx.channels.has_routes(task.model_name):
                # Every key that serves it is at its in-flight cap or open: wait, at no cost.
                await self._wait_for_route(task)
            else:
                await self.moves.fail(task, "没有可用的上游渠道,任务无法执行")
            return
        last: UpstreamError | None = None
        images: tuple[tuple[bytes, str], ...] | None = None
        # A key whose probe another task took: this task waits for the probe's outcome.
        waiting = False
        for route in routes:
            provider = (
                self.ctx.providers[task.provider]
                if route is None
                else self.ctx.channels.provider(route.key_id)
            )
            if provider is None:
                continue
            if provider.wants_image_bytes and task.image_urls and images is None:
                images = await self._reference_images(task)
                if images is None:
                    return  # the task was failed or rescheduled
            job = UpstreamJob(
                task_no=task.task_no,
                upstream_model=route.upstream_model if route else task.upstream_model,
                params=await self._upstream_params(task, route),
                prompt=task.prompt,
                image_urls=list(task.image_urls or []),
                images=(images or ()) if provider.wants_image_bytes else (),
                count=task.pictures,
            )
            # A key whose breaker's cool-down is over: one task, of all workers', probes it.
            probing = route is not None and route.open_until is not None
            # Counted against the key's in-flight cap from now, not from its acceptance:
            # submits under way at once must not all pass the cap (BFL refuses the 25th).
            if route is not None and not self.ctx.channels.claim(route):
                waiting = True
                continue
            if probing and route is not None and not await self._take_probe(route):
                self.ctx.channels.unclaim(route.key_id)
                waiting = True
                continue
            started, clock = utcnow(), time.perf_counter()
            try:
                # A submit sent near the deadline still gets its own timeout: the upstream
                # is paid once it has the job, and an answer (a picture, or a job to poll
                # and watch late) is worth more than a cut. Cut after both: the task then
                # fails as uncertain, never sent again.
                submitting = (route, started, clock)
                timeout = self.settings.upstream_timeout
                try:
                    with self.exchanges.recording(
                        task,
                        "submit",
                        channel_id=route.channel_id if route else None,
                        key_id=route.key_id if route else None,
                    ):
                        async with by_deadline(task, self.settings, submitting, at_least=timeout):
                            state = await provider.submit(job)
                finally:
                    # An accepted task is counted in flight (``submit_accepted``) before
                    # anything else runs.
                    if route is not None:
                        self.ctx.channels.unclaim(route.key_id)
            except UpstreamError as exc:
                last = exc
                try:
                    await channel_service.submit_failed(
                        self.ctx.db,
                        self.ctx.channels,
                        route,
                        attempt_row(task, route, _outcome(exc), started, clock, exc),
                        exc,
                        self.settings,
                        probe=probing,
                    )
                except Exception:
                    if not exc.uncertain:
                        raise
                    # A job may be running upstream, paid for: the bookkeeping's failure
                    # must not send the task to a crashed step's retry, which submits again.
                    log.exception("attempt_not_recorded", outcome="uncertain")
                if exc.uncertain:
                    await self._uncertain(task, route, exc)
                    return
                if exc.key_rejected and route is not None:
                    continue
                if not exc.transient:
                    # The upstream refused the task itself (its content): not elsewhere either.
                    await self.moves.fail(task, f"提交上游失败:{exc.message}")
                    return
                if route is not None:
                    log.warning(
                        "channel_failed_over", channel=route.channel_name, reason=exc.message
                    )
                continue
            reset_breaker = channel_service.submit_accepted(self.ctx.channels, route)
            attempt = attempt_row(task, route, "accepted", started, clock)
            if state.pictures:
                await self._answered_with_picture(task, route, state, attempt, reset_breaker)
            else:
                await self._accepted(task, route, state, attempt, reset_breaker)
            return
        if last is None and waiting:
            await self._wait_for_route(task)
            return
        if last is None or last.key_rejected:
            reason = f"({last.message})" if last else ""
            await self.moves.fail(task, f"没有可用的上游渠道,任务无法执行{reason}")
        else:
            await self._retry_submit(task, last)

    async def _take_probe(self, route: Route) -> bool:
        hold = self.settings.upstream_timeout + 5.0
        return await channel_service.take_probe(self.ctx.db, route, hold)

    async def _wait_for_route(self, task: AiTask) -> None:
        await self.moves.move(
            task,
            Status.CREATED,
            last_error="上游渠道暂不可用(并发已满或熔断冷却中),排队等待",
            next_run_at=self.moves.clamp(
                task, utcnow() + timedelta(seconds=self.settings.poll_interval)
            ),
        )

    async def _retry_submit(self, task: AiTask, exc: UpstreamError) -> None:
        """Later, while tries are left; else the task fails, saying how often it tried."""
        if task.attempts + 1 < self.settings.submit_attempts:
            await self.moves.retry(task, exc.message, exc.retry_after)
        else:
            await self.moves.fail(
                task, f"提交上游失败:{exc.message}(已尝试 {task.attempts + 1} 次)"
            )

    async def _uncertain(self, task: AiTask, route: Route | None, exc: UpstreamError) -> None:
        """The submit was sent and its answer lost: a job may be running upstream, paid for.
        ``fail`` (the default) never sends it again; ``retry`` does, for upstreams that
        deduplicate. Counted per channel either way."""
        policy = route.uncertain_submit if route else self.settings.uncertain_submit
        channel = route.channel_name if route else task.provider
        log.warning("uncertain_submit", policy=policy, channel=channel, reason=exc.message)
        try:
            await channel_service.count_uncertain(self.ctx.db, route)
        except Exception:
            log.exception("uncertain_not_counted", channel=channel)
        if policy == "fail":
            await self.moves.fail(
                task,
                f"提交上游失败:{exc.message},无法确认上游是否已接受任务;"
                "为避免重复生成,任务不再重试",
                upstream_status="uncertain",
                channel_id=route.channel_id if route else None,
                channel_key_id=route.key_id if route else None,
            )
        else:
            await self._retry_submit(task, exc)

    async def overran(self, task: AiTask, over: Overran) -> None:
        """The task's deadline came while its submit waited for an answer: the upstream may
        have started a job, so the attempt is recorded as uncertain, and the task fails
        (refunded) and is never sent again."""
        assert over.submit is not None
        route, started, clock = over.submit
        lost = UpstreamError("任务时限已到,上游仍未回答", transient=True, uncertain=True)
        attempt = attempt_row(task, route, "uncertain", started, clock, lost)
        await channel_service.count_uncertain(self.ctx.db, route)
        await self.moves.fail(
            task,
            over.message,
            also=(attempt,),
            upstream_status="uncertain",
            channel_id=route.channel_id if route else None,
            channel_key_id=route.key_id if route else None,
        )

    async def _accepted(
        self,
        task: AiTask,
        route: Route | None,
        state: UpstreamState,
        attempt: TaskAttempt,
        reset_breaker: channel_service.OnAccepted | None,
    ) -> None:
        now = utcnow()
        if route is not None and route.failing:
            log.info("channel_breaker_closed", channel=route.channel_name, key_id=route.key_id)
        await self.moves.move(
            task,
            Status.QUEUED,
            also=(attempt,),
            on_moved=reset_breaker,
            channel_id=route.channel_id if route else None,
            channel_key_id=route.key_id if route else None,
            upstream_model=route.upstream_model if route else task.upstream_model,
            upstream_id=state.upstream_id,
            upstream_status=state.raw_status,
            submitted_at=now,
            attempts=0,
            last_error=None,
            progress=max(task.progress, QUEUED_PROGRESS),
            # An answer with the picture's address may carry the usage: kept for the copy.
            **usage_of(state),
            **(
                # Answered with the picture's address: copy it now, nothing to poll.
                {"upstream_result_url": pack_urls(state.result_urls), "next_run_at": now}
                if state.phase == "succeeded" and state.result_urls
                else {
                    "next_run_at": self.moves.clamp(
                        task, now + timedelta(seconds=self.settings.first_poll_delay)
                    )
                }
            ),
        )

    async def _answered_with_picture(
        self,
        task: AiTask,
        route: Route | None,
        state: UpstreamState,
        attempt: TaskAttempt,
        reset_breaker: channel_service.OnAccepted | None,
    ) -> None:
        """The upstream answered the submit with the picture itself (it cannot be fetched
        again): stored now, and the task accepted and completed in one transaction."""
        accepted: dict[str, Any] = {
            "channel_id": route.channel_id if route else None,
            "channel_key_id": route.key_id if route else None,
            "upstream_model": route.upstream_model if route else task.upstream_model,
            "upstream_id": state.upstream_id,
            "upstream_status": state.raw_status,
            "submitted_at": utcnow(),
            **usage_of(state),
        }
        # The pictures are paid for and in hand: no backstop cuts their storing.
        hold_off_step_bound()
        stored: list[Delivered] = []
        spoiled: NotAnImage | None = None
        moved = False
        owner = self.moves.owner
        moderation = self.ctx.moderation
        reviewed = moderation.checks_pictures
        try:
            for picture in state.pictures[: task.pictures]:
                try:
                    key = (await self.results.store(task, picture)).key
                except NotAnImage as exc:
                    spoiled = exc
                    continue
                stored.append(Delivered(key, None, picture if reviewed else None))
            if not stored:
                await self.moves.fail(
                    task, f"上游返回的结果不是有效图片:{spoiled}", also=(attempt,), **accepted
                )
                return
            # Seen by the moderation service, if the operator has one, before anything
            # is written (shengtu.tasks.review).
            ending: dict[str, Any] = {}
            rows: tuple[Any, ...] = (attempt,)
            if reviewed:
                verdicts = await moderation.check_pictures(
                    [(d.picture or b"", d.key) for d in stored]
                )
                judgement = judge(verdicts, fail_open=moderation.fail_open, holds=moderation.holds)
                if judgement.failure is not None:
                    await self.moves.fail(task, judgement.failure, also=(attempt,), **accepted)
                    return
                if judgement.hold:
                    held = [
                        HeldPicture(d.key, None, v.flagged)
                        for d, v in zip(stored, verdicts, strict=True)
                    ]
                    ending = held_columns(utcnow(), moderation.hold_seconds)
                    rows = (attempt, hold_event(task, held, verdicts))
                else:
                    for i in judgement.refused:
                        await self.ctx.storage.delete(stored[i].key)
                    stored = [stored[i] for i in judgement.kept]
            async with self.ctx.db.transaction() as session:
                for row in rows:
                    await add(session, row)
                queued = await move(session, task, Status.QUEUED, lease_owner=owner, **accepted)
                if queued is not None:
                    if reset_breaker is not None:
                        await reset_breaker(session)
                    if ending:
                        held_move = await move(
                            session, task, Status.PROCESSING, lease_owner=None, **ending
                        )
                        moved = held_move is not None
                    else:
                        moved = (
                            await move(
                                session,
                                task,
                                Status.COMPLETED,
                                lease_owner=None,
                                last_error=None,
                                cost=operator_cost(
                                    task, route.cost if route else None, len(stored)
                                ),
                                **self.results.delivered(task, stored),
                            )
                            is not None
                        )
        finally:
            if not moved:
                for delivered in stored:
                    await self.ctx.storage.delete(delivered.key)
        if not moved:
            log.warning("lease_lost", status=task.status, target=Status.COMPLETED.value)
            return
        log.info("task_moved", status=task.status, progress=task.progress)
        await self.moves.announce(task)

    async def _reference_images(self, task: AiTask) -> tuple[tuple[bytes, str], ...] | None:
        """The task's reference pictures as bytes, for an upstream that takes files: our
        own uploads from storage, outside URLs through the SSRF guard. None when the task
        was failed or put off instead."""
        pictures: list[tuple[bytes, str]] = []
        for url in task.image_urls or []:
            key = self.ctx.storage.key_from_url(url)
            try:
                if key is not None:
                    data = await self.ctx.storage.get(key)
                    if data is None:
                        await self.moves.fail(task, f"参考图已不存在: {url[:100]}")
                        return None
                else:
                    data = (
                        await fetch_image_bytes(
                            self._references,
                            url,
                            max_bytes=self.settings.max_upload_bytes,
                            what="参考图",
                            **download_bounds(self.settings, seconds_left(task)),
                        )
                    ).data
                info = await self.ctx.decoding.run(
                    sniff_image, data, self.settings.max_image_pixels
                )
            except FetchError as exc:
                if exc.out_of_time:
                    raise download_overran("参考图", self.settings) from exc
                if exc.transient and task.attempts + 1 < self.settings.download_attempts:
                    await self.moves.retry(task, f"参考图下载失败:{exc.message}", None)
                else:
                    await self.moves.fail(task, f"参考图下载失败:{exc.message}")
                return None
            except NotAnImage as exc:
                await self.moves.fail(task, f"参考图不是有效图片:{exc}")
                return None
            pictures.append((data, info.content_type))
        return tuple(pictures)

    async def cancel(self, task: AiTask, provider: Provider) -> None:
        """A user's cancel of a task this upstream can stop: passed on, then the task fails
        with its points back; if the picture was done already, the user gets it; if the
        upstream would not stop it, the task runs on (the operator pays for it)."""
        assert task.upstream_id is not None
        if not isinstance(provider, Cancellable):
            await self.results.poll(task, provider)
            return
        try:
            with self.exchanges.recording(
                task, "cancel", channel_id=task.channel_id, key_id=task.channel_key_id
            ):
                async with by_deadline(task, self.settings):
                    state = await provider.cancel(task.upstream_id, task.task_no)
        except UpstreamError as exc:
            if exc.transient:
                await self.moves.retry(task, f"取消上游任务失败:{exc.message}", exc.retry_after)
                return
            state = None
        if state is not None and state.phase == "succeeded":
            await self.results.store_result(
                task, provider, state, {"upstream_status": state.raw_status, **usage_of(state)}
            )
            return
        if state is not None and state.phase in ("queued", "processing"):
            # The upstream would not stop it (DashScope cancels a queued job only): it runs
            # on and is paid for, so the task runs on too, charged as any, and ends as any.
            log.info("upstream_cancel_refused", upstream_status=state.raw_status)
            await self.moves.move(
                task,
                Status(task.status),
                cancel_requested_at=None,
                upstream_status=state.raw_status,
                next_run_at=self.moves.clamp(
                    task, utcnow() + timedelta(seconds=self.settings.poll_interval)
                ),
            )
            return
        await self.moves.fail(
            task,
            "用户已取消任务",
            upstream_status=state.raw_status if state else task.upstream_status,
        )
