"""The kept upstream exchanges' periodic work: those past SHENGTU_EXCHANGE_RETENTION_DAYS
deleted (:func:`shengtu.exchanges.service.prune`)."""

from __future__ import annotations

from shengtu.exchanges.service import prune
from shengtu.periodic import PeriodicJob

JOBS = (PeriodicJob("exchanges_prune", prune),)
