"""The operator's moderation policy over its provider: a prompt screened before the
charge (refused with its reason, kept as a blocked event, a strike against its user),
and the verdicts on a task's result pictures, which :mod:`shengtu.tasks.review` acts on.

With no provider (the default) :attr:`Moderation.screens_prompts` and
:attr:`Moderation.checks_pictures` are False and nothing else here runs: the worker's
only cost is reading one attribute per finished task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from shengtu import metrics
from shengtu.config import Settings
from shengtu.db import Database, add
from shengtu.errors import BadRequest, ServiceUnavailable
from shengtu.logs import get_logger
from shengtu.models.safety import SafetyEvent
from shengtu.moderation.aliyun import AliyunModerator
from shengtu.moderation.base import ModerationUnavailable, Moderator, Verdict
from shengtu.moderation.links import OPERATOR_SECONDS, SERVICE_SECONDS, PictureLinks
from shengtu.moderation.openai import OpenAIModerator
from shengtu.providers.base import MODERATED
from shengtu.safety.service import count_strike

log = get_logger("shengtu.moderation")

# The hit a refusal by the service is kept as, beside the word lists' own (its "tier").
SERVICE_HIT = "service"
# At most this many of the service's labels are shown to the user.
SHOWN_LABELS = 3


def build_moderator(settings: Settings) -> Moderator | None:
    """The provider the settings name, or None (SHENGTU_MODERATION_PROVIDER=none)."""
    timeout = settings.moderation_timeout_seconds
    if settings.moderation_provider == "openai":
        return OpenAIModerator(
            settings.moderation_base_url,
            settings.moderation_api_key,
            model=settings.moderation_model,
            timeout=timeout,
        )
    if settings.moderation_provider == "aliyun":
        return AliyunModerator(
            settings.moderation_base_url,
            settings.moderation_access_key_id,
            settings.moderation_access_key_secret,
            text_action=settings.moderation_text_action,
            text_service=settings.moderation_text_service,
            image_service=settings.moderation_image_service,
            timeout=timeout,
        )
    return None


def shown(labels: Sequence[str]) -> str:
    return "、".join(labels[:SHOWN_LABELS]) or "未说明类别"


@dataclass(frozen=True, slots=True)
class PictureVerdict:
    """The service's verdict on one picture; None when it gave none (``unavailable``
    says why)."""

    verdict: Verdict | None
    unavailable: str | None = None

    @property
    def flagged(self) -> bool:
        return self.verdict is not None and self.verdict.flagged


class Moderation:
    def __init__(
        self, db: Database, settings: Settings, moderator: Moderator | None, secret: str
    ) -> None:
        self._db = db
        self.moderator = moderator
        self.links = PictureLinks(secret, settings.resolved_public_base_url)
        self.screens_prompts = moderator is not None and settings.moderation_prompts
        self.checks_pictures = moderator is not None and settings.moderation_images != "off"
        self.holds = settings.moderation_images == "hold"
        self.fail_open = settings.moderation_fail == "open"
        self.hold_seconds = settings.moderation_hold_hours * 3600
        self._strikes = settings.safety_strikes

    async def aclose(self) -> None:
        if self.moderator is not None:
            await self.moderator.aclose()

    async def screen(self, user_id: int, prompt: str) -> None:
        """Refuses (400) a prompt the service flags, and (503, when the operator fails
        closed) one it gives no verdict on; both before anything is charged."""
        if not self.screens_prompts or self.moderator is None:
            return
        try:
            verdict = await self.moderator.check_text(prompt)
        except ModerationUnavailable as exc:
            metrics.moderation("prompt", "unavailable")
            log.warning("moderation_unavailable", what="prompt", reason=exc.message)
            if self.fail_open:
                return
            raise ServiceUnavailable("内容审核服务暂不可用,请稍后再试(未扣除积分)") from exc
        if not verdict.flagged:
            metrics.moderation("prompt", "passed")
            return
        metrics.moderation("prompt", "flagged")
        await self._keep_refusal(user_id, prompt, verdict)
        await count_strike(self._db, user_id, self._strikes)
        raise BadRequest(
            f"{MODERATED}:提示词含有不允许的内容({shown(verdict.labels)}),请修改后再试",
            data={"moderation": list(verdict.labels[:SHOWN_LABELS])},
        )

    async def _keep_refusal(self, user_id: int, prompt: str, verdict: Verdict) -> None:
        """A refused prompt, kept for the operator as the word lists keep theirs."""
        name = self.moderator.name if self.moderator is not None else ""
        hits = [
            {"word": label, "tier": SERVICE_HIT, "text": name, "start": 0}
            for label in verdict.labels or ("flagged",)
        ]
        async with self._db.transaction() as session:
            await add(
                session,
                SafetyEvent(user_id=user_id, tier="block", task_no=None, prompt=prompt, hits=hits),
            )

    def operator_url(self, key: str) -> str:
        """Where the operator sees a held picture, for the next hour."""
        return self.links.url(key, OPERATOR_SECONDS)

    async def check_pictures(self, pictures: Sequence[tuple[bytes, str]]) -> list[PictureVerdict]:
        """The verdict on each picture (its bytes, its storage key), asked all at once."""
        assert self.moderator is not None
        moderator = self.moderator

        async def one(picture: bytes, key: str) -> PictureVerdict:
            try:
                verdict = await moderator.check_image(picture, self.links.url(key, SERVICE_SECONDS))
            except ModerationUnavailable as exc:
                metrics.moderation("picture", "unavailable")
                log.warning("moderation_unavailable", what="picture", reason=exc.message)
                return PictureVerdict(None, exc.message)
            metrics.moderation("picture", "flagged" if verdict.flagged else "passed")
            return PictureVerdict(verdict)

        return list(await asyncio.gather(*(one(p, k) for p, k in pictures)))
