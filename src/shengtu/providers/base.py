"""What the worker needs from an upstream, and nothing about the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

UpstreamPhase = Literal["queued", "processing", "succeeded", "failed"]


@dataclass(frozen=True)
class UpstreamJob:
    task_no: str
    upstream_model: str
    params: dict[str, Any]
    prompt: str
    image_urls: list[str] = field(default_factory=list)
    # The reference pictures themselves (bytes, content type), for a protocol that sends
    # files (``Provider.wants_image_bytes``); fetched by the worker through the SSRF guard.
    images: tuple[tuple[bytes, str], ...] = ()
    # How many pictures the task asks of this one job (its ``n``). An upstream that makes
    # fewer answers fewer: the task is charged for what it delivers.
    count: int = 1


@dataclass(frozen=True)
class UpstreamState:
    upstream_id: str
    phase: UpstreamPhase
    raw_status: str = ""
    progress: int | None = None
    result_urls: tuple[str, ...] = ()
    error: str | None = None
    # The picture itself, when the upstream answered with it inline (OpenAI's b64_json).
    pictures: tuple[bytes, ...] = ()
    # The upstream's own account of the job, where its protocol reports one (Seedream's
    # ``usage``, OpenAI's token counts): recorded on the task as it came.
    usage: dict[str, Any] | None = None


# How a refusal of the content itself (a moderation: the prompt, a reference image or the
# picture made) begins its message, whatever the protocol: the stats and the metrics count
# such failures apart from outages.
MODERATED = "内容审核未通过"


def is_moderation(message: str | None) -> bool:
    """Whether a task's error message says an upstream refused its content."""
    return message is not None and MODERATED in message


class UpstreamError(Exception):
    """A call that did not give an answer we can use.

    ``transient``: trying again later may work (network, 5xx, 429, garbage).
    Otherwise the upstream refused for good and the task fails at once.
    ``uncertain``: the request was sent and its answer lost (read timeout, reset): the
    upstream may have started a job for it, and sending it again may start a second.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        uncertain: bool = False,
        key_rejected: bool = False,
        http_status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.retry_after = retry_after
        self.uncertain = uncertain
        # The upstream refused the key itself (bad key, no balance): no task should use it.
        self.key_rejected = key_rejected
        self.http_status = http_status


class Provider(Protocol):
    name: str
    wants_image_bytes: bool
    # Whether its jobs are polled (an upstream that answers with the picture is not).
    polls: bool

    @property
    def trusted_origins(self) -> frozenset[str]:
        """Origins configured by the operator, whose result URLs may be fetched as they are."""
        ...

    async def submit(self, job: UpstreamJob) -> UpstreamState: ...

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState: ...

    async def check(self) -> None:
        """Proves the address and the key without starting a paid job; raises UpstreamError."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Cancellable(Protocol):
    """An upstream that can stop a job it accepted."""

    async def cancel(self, upstream_id: str, task_no: str = "") -> UpstreamState: ...
