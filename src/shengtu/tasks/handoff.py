"""New tasks handed to a worker of the submitting process, leased in the charging
transaction: no claim (a write transaction and a due scan) stands between a submit and
its first step. A process that dies before stepping them leaves leases that run out, and
any worker carries on, as after any crashed worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shengtu.models.tasks import AiTask


@dataclass(frozen=True)
class Lease:
    owner: str
    until: datetime


class Taker(Protocol):
    def reserve(self, count: int) -> Lease | None:
        """Room for ``count`` new tasks, held until :meth:`take` or :meth:`release`; None
        when there is none (the tasks are left to the claims of any worker)."""

    def release(self, count: int) -> None: ...

    def take(self, tasks: Sequence[AiTask]) -> None:
        """Step ``tasks``, committed with the lease :meth:`reserve` gave."""


class Handoff:
    """A submit's room with this process's taker, if it has one and room: the columns
    that lease its new tasks, then :meth:`hand` after the commit (or :meth:`abandon`)."""

    def __init__(self, taker: Taker | None, count: int) -> None:
        self._taker = taker
        self._count = count
        self._lease = taker.reserve(count) if taker is not None else None

    def columns(self, now: datetime) -> dict[str, Any]:
        if self._lease is None:
            return {"lease_owner": None, "lease_until": None, "next_run_at": now}
        lease = self._lease
        # Not due before the lease ends, as a claimed task (shengtu.tasks.worker).
        return {"lease_owner": lease.owner, "lease_until": lease.until, "next_run_at": lease.until}

    def abandon(self) -> None:
        if self._taker is not None and self._lease is not None:
            self._taker.release(self._count)
            self._lease = None

    def hand(self, tasks: Sequence[AiTask]) -> bool:
        """The committed ``tasks`` to the taker; False when they are left to the claims."""
        if self._taker is None or self._lease is None:
            return False
        self._taker.take(tasks)
        self._lease = None
        return True
