"""A capability's periodic work, which every worker runs now and then (each capability
lists its own in its ``jobs.py``; ``tasks/worker.py`` runs them all)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shengtu.context import AppContext


@dataclass(frozen=True)
class PeriodicJob:
    """``run`` must be safe while other workers run the same job: each is written so."""

    name: str
    run: Callable[[AppContext], Awaitable[object]]
