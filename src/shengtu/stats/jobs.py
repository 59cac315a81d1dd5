"""The stats' periodic work: the closed hours rolled up."""

from __future__ import annotations

from shengtu.context import AppContext
from shengtu.logs import get_logger
from shengtu.periodic import PeriodicJob
from shengtu.stats.service import rollup

log = get_logger("shengtu.stats")


async def roll_up(ctx: AppContext) -> None:
    hours = await rollup(ctx.db)
    if hours:
        log.info("stats_rolled_up", hours=hours)


JOBS = (PeriodicJob("stats_rollup", roll_up),)
