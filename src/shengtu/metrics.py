"""Prometheus metrics, correct across processes.

Every process of one deployment on one machine (``serve`` and its ``worker`` processes)
writes its figures to files in ``SHENGTU_METRICS_DIR`` (prometheus-client's multiprocess
mode); ``/metrics`` in any of them sums them all. The database's own state (tasks due,
worker lag, breakers) is read at each scrape. Until :func:`setup` runs (a process that
serves or works), recording is a no-op.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shengtu.config import Settings

# Seconds: a hot read takes a millisecond, a picture a minute.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RESULT_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Metrics:
    ready = False
    http_requests: Any
    http_seconds: Any
    tasks: Any
    result_seconds: Any
    upstream_attempts: Any
    upstream_seconds: Any
    webhook_deliveries: Any
    points: Any
    prompt_checks: Any
    moderation: Any


M = _Metrics()


def directory(settings: Settings) -> Path:
    return settings.metrics_dir or settings.data_dir / "metrics"


def setup(settings: Settings) -> None:
    """Record into this deployment's metrics directory from now on."""
    if M.ready:
        return
    where = directory(settings)
    where.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(where)
    # The value class is chosen when prometheus_client is first imported: choose again,
    # now that the directory is known.
    from prometheus_client import Counter, Histogram, values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    M.http_requests = Counter(
        "shengtu_http_requests", "HTTP requests answered", ["route", "method", "status"]
    )
    M.http_seconds = Histogram(
        "shengtu_http_request_seconds", "Time to answer", ["route", "method"], buckets=HTTP_BUCKETS
    )
    # outcome: completed, failed, or moderated (failed: an upstream refused the content).
    M.tasks = Counter("shengtu_tasks_ended", "Tasks that ended", ["model", "outcome"])
    M.result_seconds = Histogram(
        "shengtu_task_result_seconds",
        "From submit to the end",
        ["model", "outcome"],
        buckets=RESULT_BUCKETS,
    )
    M.upstream_attempts = Counter(
        "shengtu_upstream_attempts", "Calls to upstreams", ["channel", "outcome"]
    )
    M.upstream_seconds = Histogram(
        "shengtu_upstream_attempt_seconds",
        "Upstream call latency",
        ["channel"],
        buckets=UPSTREAM_BUCKETS,
    )
    M.webhook_deliveries = Counter(
        "shengtu_webhook_deliveries", "Webhook delivery attempts", ["event", "outcome"]
    )
    M.points = Counter("shengtu_points", "Points charged and refunded", ["kind"])
    # verdict: blocked (refused, nothing charged), replaced (masked), flagged (for review).
    M.prompt_checks = Counter("shengtu_prompt_checks", "Prompts the word lists caught", ["verdict"])
    for verdict in ("blocked", "replaced", "flagged"):
        M.prompt_checks.labels(verdict)
    # kind: prompt or picture; verdict: passed, flagged, or unavailable (no verdict: the
    # operator's SHENGTU_MODERATION_FAIL decided).
    M.moderation = Counter(
        "shengtu_moderation_checks", "Checks by the moderation service", ["kind", "verdict"]
    )
    for kind in ("prompt", "picture"):
        for verdict in ("passed", "flagged", "unavailable"):
            M.moderation.labels(kind, verdict)
    # Series that exist from the start at zero: a rate over them is 0, not missing.
    for kind in ("charged", "refunded"):
        M.points.labels(kind)
    for event in ("task.completed", "task.failed", "task.late_result", "webhook.test"):
        for outcome in ("delivered", "failed"):
            M.webhook_deliveries.labels(event, outcome)
    M.ready = True
    pid = os.getpid()

    def _dead() -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(where))  # type: ignore[no-untyped-call]

    atexit.register(_dead)


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    if M.ready:
        M.http_requests.labels(route, method, str(status)).inc()
        M.http_seconds.labels(route, method).observe(seconds)


def task_ended(model: str, outcome: str, seconds: float) -> None:
    if M.ready:
        M.tasks.labels(model, outcome).inc()
        M.result_seconds.labels(model, outcome).observe(max(0.0, seconds))


def upstream_attempt(channel: int | None, outcome: str, seconds: float) -> None:
    if M.ready:
        name = str(channel) if channel is not None else "settings"
        M.upstream_attempts.labels(name, outcome).inc()
        M.upstream_seconds.labels(name).observe(seconds)


def webhook_delivery(event: str, ok: bool) -> None:
    if M.ready:
        M.webhook_deliveries.labels(event, "delivered" if ok else "failed").inc()


def points(kind: str, amount: int) -> None:
    if M.ready:
        M.points.labels(kind).inc(amount)


def prompt_check(verdict: str) -> None:
    if M.ready:
        M.prompt_checks.labels(verdict).inc()


def moderation(kind: str, verdict: str) -> None:
    if M.ready:
        M.moderation.labels(kind, verdict).inc()


def render(extra: Iterable[Any]) -> bytes:
    """The text exposition: every process's figures, summed, and ``extra`` families."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    if M.ready:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]

    class _Extra:
        def collect(self) -> Iterable[Any]:
            return list(extra)

    registry.register(_Extra())
    return generate_latest(registry)
