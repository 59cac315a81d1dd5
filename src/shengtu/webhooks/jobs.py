"""The webhooks' periodic work, run by every dispatcher (so wherever a worker runs): old
finished messages and their attempts are deleted after SHENGTU_WEBHOOK_RETENTION_DAYS.

A message still pending is never deleted. "Old" is counted from its last (re)scheduling
(``next_attempt_at``: its first send, the wait before a retry, or a redelivery), so a
message sent again yesterday is kept however long ago it was first made. Several
dispatchers may prune at once: each batch deletes what is still there.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.models.webhooks import WebhookAttempt, WebhookMessage

FINISHED = ("delivered", "failed")
BATCH = 500


async def prune(ctx: AppContext, *, batches: int = 100) -> int:
    """Deletes finished messages last scheduled before the retention, with their attempts,
    ``BATCH`` at a time (short transactions); returns how many messages went."""
    cutoff = utcnow() - timedelta(days=ctx.settings.webhook_retention_days)

    async def delete_ids(session: AsyncSession, ids: list[int]) -> int:
        await session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(ids)))
        result = await session.execute(
            delete(WebhookMessage).where(
                WebhookMessage.id.in_(ids), WebhookMessage.status.in_(FINISHED)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    due = (
        select(WebhookMessage.id)
        .where(WebhookMessage.status.in_(FINISHED), WebhookMessage.next_attempt_at < cutoff)
        .order_by(WebhookMessage.id)
    )
    return await ctx.db.delete_in_batches(due, delete_ids, batch=BATCH, batches=batches)
