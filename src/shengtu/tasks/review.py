"""What becomes of a task's result pictures once the moderation service has seen them:
delivered, refused (deleted; the task completes with the others or fails, refunded, with
the moderation reason), or held for the operator.

A held task stays ``processing`` (the state machine has no other place for it, and its
clients go on polling): its pictures are stored but their URLs handed to nobody but the
operator, its ``upstream_status`` says :data:`HELD`, and both its next step and its
deadline are moved to the end of the hold (SHENGTU_MODERATION_HOLD_HOURS). The pictures
wait in the review queue as a ``safety_event`` of tier ``image``, one hit per picture.
The operator's decision only marks the event and makes the task due: the worker then
ends the task through the same moves as any (approved: completed; denied: the refused
pictures deleted, the task failed and refunded, or completed with the others); a hold
nobody decided ends at its deadline, failed and refunded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from shengtu.db import Database
from shengtu.models.safety import SafetyEvent
from shengtu.models.tasks import AiTask
from shengtu.moderation.service import PictureVerdict, shown
from shengtu.providers.base import MODERATED

# The upstream_status of a held task (the upstream is done with it).
HELD = "held_for_review"
IMAGE_TIER = "image"
REFUSED = f"{MODERATED}:结果图片含有不允许的内容"
DENIED = f"{MODERATED}:结果图片经人工审核未通过"
EXPIRED = f"{MODERATED}:结果图片等待人工审核超时"
UNAVAILABLE = "内容审核服务不可用,结果图片未交付"


@dataclass(frozen=True)
class Judgement:
    """Which pictures (by their place in the task's list) go out and which are refused;
    or the task's failure; or the whole task held."""

    kept: tuple[int, ...] = ()
    refused: tuple[int, ...] = ()
    failure: str | None = None
    hold: bool = False
    labels: tuple[str, ...] = field(default=())


def judge(verdicts: Sequence[PictureVerdict], *, fail_open: bool, holds: bool) -> Judgement:
    """The policy: no verdict follows the operator's fail setting; a flagged picture is
    refused (``holds``: the task held for the operator instead)."""
    missing = next((v.unavailable for v in verdicts if v.verdict is None), None)
    if missing is not None and not fail_open:
        return Judgement(failure=f"{UNAVAILABLE}({missing})")
    flagged = tuple(i for i, v in enumerate(verdicts) if v.flagged)
    every = tuple(range(len(verdicts)))
    if not flagged:
        return Judgement(kept=every)
    labels = tuple(
        dict.fromkeys(
            label for v in verdicts if v.verdict is not None for label in v.verdict.labels
        )
    )
    if holds:
        return Judgement(kept=every, hold=True, labels=labels)
    kept = tuple(i for i in every if i not in flagged)
    failure = None if kept else f"{REFUSED}({shown(labels)})"
    return Judgement(kept=kept, refused=flagged, failure=failure, labels=labels)


@dataclass(frozen=True)
class HeldPicture:
    key: str
    upstream_url: str | None
    flagged: bool


def hold_event(
    task: AiTask, pictures: Sequence[HeldPicture], verdicts: Sequence[PictureVerdict]
) -> SafetyEvent:
    """The review queue's entry of a held task: one hit per picture (its labels as the
    ``word``, its storage key), the prompt for the operator's eyes."""
    hits: list[dict[str, Any]] = []
    for index, (picture, verdict) in enumerate(zip(pictures, verdicts, strict=True)):
        labels = verdict.verdict.labels if verdict.verdict is not None else ()
        hits.append(
            {
                "word": "、".join(labels) or ("未通过" if picture.flagged else "通过"),
                "tier": IMAGE_TIER,
                "text": "flagged" if picture.flagged else "passed",
                "start": index,
                "key": picture.key,
                "upstreamUrl": picture.upstream_url,
                "flagged": picture.flagged,
            }
        )
    return SafetyEvent(
        user_id=task.user_id, tier=IMAGE_TIER, task_no=task.task_no, prompt=task.prompt, hits=hits
    )


def held_columns(now: datetime, hold_seconds: float) -> dict[str, Any]:
    """A held task's columns: due again, and ended, when the hold runs out."""
    until = now + timedelta(seconds=hold_seconds)
    return {
        "upstream_status": HELD,
        "progress": 99,
        "next_run_at": until,
        "deadline_at": until,
        "last_error": None,
    }


def pictures_of(event: SafetyEvent) -> list[HeldPicture]:
    return [
        HeldPicture(str(h["key"]), h.get("upstreamUrl"), bool(h.get("flagged")))
        for h in sorted(event.hits, key=lambda h: int(h.get("start", 0)))
        if h.get("key")
    ]


async def held_event(db: Database, task_no: str) -> SafetyEvent | None:
    """The review queue's entry of a held task (the latest, should there be two)."""
    async with db.read() as session:
        found = await session.scalars(
            select(SafetyEvent)
            .where(SafetyEvent.task_no == task_no, SafetyEvent.tier == IMAGE_TIER)
            .order_by(SafetyEvent.id.desc())
            .limit(1)
        )
        return found.first()
