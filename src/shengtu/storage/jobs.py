"""Storage's periodic work: unused uploads and expired results deleted
(:func:`shengtu.storage.service.sweep`)."""

from __future__ import annotations

from shengtu.periodic import PeriodicJob
from shengtu.storage.service import sweep

JOBS = (PeriodicJob("storage_sweep", sweep),)
