"""Idempotency keys' periodic work: keys past their 24 hours deleted."""

from __future__ import annotations

from shengtu.idempotency.service import prune
from shengtu.periodic import PeriodicJob

JOBS = (PeriodicJob("idempotency_prune", prune),)
