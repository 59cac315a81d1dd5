"""The webhook outbox: an event's messages are written in the transaction of the event.

A task that ends, commits its ending and its messages together; nothing is sent from
here. The dispatcher (:mod:`shengtu.webhooks.dispatcher`) delivers what is due.
"""

from __future__ import annotations

import secrets

from sqlalchemy import bindparam, select

from shengtu.db import Conn, add, run, utcnow
from shengtu.models.tasks import AiTask
from shengtu.models.webhooks import WebhookEndpoint, WebhookMessage

COMPLETED = "task.completed"
FAILED = "task.failed"
LATE_RESULT = "task.late_result"
TEST = "webhook.test"
EVENTS = (COMPLETED, FAILED, LATE_RESULT)


def new_msg_id() -> str:
    return "msg_" + secrets.token_hex(16)


_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.url).where(
    WebhookEndpoint.user_id == bindparam("user_id"), WebhookEndpoint.enabled.is_(True)
)


async def enqueue(session: Conn, task: AiTask, event: str) -> int:
    """Messages for ``event`` of ``task``: to its callbackUrl and to each enabled endpoint
    of its owner. Returns how many."""
    now = utcnow()
    endpoints = (await run(session, _ENDPOINTS, {"user_id": task.user_id})).rows
    targets: list[tuple[int | None, str]] = [(e[0], e[1]) for e in endpoints]
    if task.callback_url:
        targets.append((None, task.callback_url))
    for endpoint_id, url in targets:
        await add(
            session,
            WebhookMessage(
                msg_id=new_msg_id(),
                user_id=task.user_id,
                endpoint_id=endpoint_id,
                url=url,
                event=event,
                task_no=task.task_no,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            ),
        )
    return len(targets)
