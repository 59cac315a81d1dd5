"""The task state machine: the one table of allowed moves, and the guarded write (the
statuses live beside the task table, in ``shengtu.models.tasks``).

A move is one UPDATE guarded by the task's current status (and the mover's lease), so
however many workers race, exactly one wins. A move to ``failed`` refunds in the same
transaction (and gives the task's API key its quota back); a move to ``completed`` with
fewer pictures ``delivered`` than the task asked for gives back the missing ones' points
(ledger kind "undelivered"), in the same transaction. The ledger's unique (task_no, kind)
makes a second refund of either kind impossible.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import Update

from shengtu import metrics
from shengtu.auth import quota
from shengtu.db import Conn, after_commit, run, utcnow
from shengtu.models.tasks import TERMINAL, AiTask, Status
from shengtu.points import service as points
from shengtu.providers.base import is_moderation
from shengtu.webhooks import outbox

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.CREATED, Status.QUEUED, Status.PROCESSING, Status.FAILED}),
    Status.QUEUED: frozenset({Status.QUEUED, Status.PROCESSING, Status.COMPLETED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.PROCESSING, Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def check_move(current: str, target: str) -> None:
    if Status(target) not in TRANSITIONS[Status(current)]:
        raise IllegalTransition(f"{current} → {target}")


# One UPDATE per shape of move, built once: composing an ORM UPDATE cost more CPU than
# running it (a worker makes one move per poll, hundreds a second).
_MOVE_STATEMENTS: dict[tuple[tuple[str, ...], bool, bool], Update] = {}
_TASKS: Table = AiTask.__table__  # type: ignore[assignment]


def _move_statement(columns: tuple[str, ...], leased: bool, unleased: bool) -> Update:
    key = (columns, leased, unleased)
    stmt = _MOVE_STATEMENTS.get(key)
    if stmt is None:
        stmt = update(_TASKS).where(
            _TASKS.c.id == bindparam("w_id"), _TASKS.c.status == bindparam("w_status")
        )
        if leased:
            stmt = stmt.where(_TASKS.c.lease_owner == bindparam("w_owner"))
        if unleased:
            stmt = stmt.where(
                or_(_TASKS.c.lease_until.is_(None), _TASKS.c.lease_until < bindparam("w_now"))
            )
        stmt = stmt.values({name: bindparam(f"v_{name}") for name in columns})
        _MOVE_STATEMENTS[key] = stmt
    return stmt


async def move(
    session: Conn,
    task: AiTask,
    target: Status,
    *,
    lease_owner: str | None,
    unleased: bool = False,
    **values: Any,
) -> AiTask | None:
    """Move ``task`` (as last read) to ``target``; None when someone else moved it first.

    With ``lease_owner`` the move also requires that the mover still holds the lease,
    and releases it; with ``unleased``, that no worker holds a live lease on it (one may
    be talking to the upstream about it right now). A move to ``failed`` refunds the
    task's points (and its key's quota) in this transaction; a move to an end writes its
    webhook messages (:mod:`shengtu.webhooks.outbox`) in it too.
    On success ``task`` itself is returned, holding what was written: the guard (same
    status, same lease) means nobody else wrote the row since it was read.
    """
    check_move(task.status, target)
    now = utcnow()
    changes: dict[str, Any] = {
        "status": target.value,
        "updated_at": now,
        "lease_owner": None,
        "lease_until": None,
        **values,
    }
    if target is Status.COMPLETED:
        changes.update(progress=100, completed_at=now)
        changes.setdefault("delivered", task.pictures)
    elif target is Status.FAILED:
        changes.update(completed_at=now, delivered=0)
    columns = tuple(sorted(changes))
    params = {f"v_{name}": changes[name] for name in columns}
    params.update(w_id=task.id, w_status=task.status)
    if lease_owner is not None:
        params["w_owner"] = lease_owner
    if unleased:
        params["w_now"] = now
    statement = _move_statement(columns, lease_owner is not None, unleased)
    if (await run(session, statement, params)).rowcount != 1:
        return None
    given_back = 0
    if target is Status.FAILED:
        given_back = task.points_cost
        await points.refund(session, task.user_id, given_back, task.task_no)
    elif target is Status.COMPLETED and changes["delivered"] < task.pictures:
        missing = task.pictures - changes["delivered"]
        given_back = task.points_cost // task.pictures * missing
        await points.give_back_undelivered(session, task.user_id, given_back, task.task_no, missing)
    if given_back and task.api_key_id is not None:
        await quota.give_back(session, task.api_key_id, given_back)
    if target in TERMINAL:
        model, took = task.model_name, (now - task.created_at).total_seconds()
        outcome = target.value
        if target is Status.FAILED and is_moderation(changes.get("error_message")):
            outcome = "moderated"
        after_commit(session, lambda: metrics.task_ended(model, outcome, took))
        if given_back:
            after_commit(session, lambda: metrics.points("refunded", given_back))
        await outbox.enqueue(
            session, task, outbox.COMPLETED if target is Status.COMPLETED else outbox.FAILED
        )
    for name, value in changes.items():
        set_committed_value(task, name, value)
    return task
