"""The task state machine: the one table of allowed moves, and the guarded write (the
statuses live beside the task table, in ``shengtu.models.tasks``).

A move is one UPDATE guarded by the task's current status (and the mover's lease), so
however many workers race, exactly one wins. A move to ``failed`` refunds in the same
transaction (and gives the task's API key its quota back); the ledger's unique
(task_no, kind) makes a second refund impossible.
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
    elif target is Status.FAILED:
        changes["completed_at"] = now
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
    if target is Status.FAILED:
        await points.refund(session, task.user_id, task.points_cost, task.task_no)
        if task.api_key_id is not None:
            await quota.give_back(session, task.api_key_id, task.points_cost)
    if target in TERMINAL:
        model, took, cost = (
            task.model_name,
            (now - task.created_at).total_seconds(),
            task.points_cost,
        )
        after_commit(session, lambda: metrics.task_ended(model, target.value, took))
        if target is Status.FAILED:
            after_commit(session, lambda: metrics.points("refunded", cost))
        await outbox.enqueue(
            session, task, outbox.COMPLETED if target is Status.COMPLETED else outbox.FAILED
        )
    for name, value in changes.items():
        set_committed_value(task, name, value)
    return task
