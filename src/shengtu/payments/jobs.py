"""Payments' periodic work: every pending order whose next question has come is asked
about at its provider (:func:`shengtu.payments.service.check_due`), so a lost notify is
repaired without anyone; expired orders are closed. Run by every worker, every
SHENGTU_PAYMENT_CHECK_SECONDS (the orders' own back-off spaces the questions); so is a
refund that had no answer, or "processing", where asking again under its number is safe
(:func:`shengtu.payments.admin_service.recheck_refunds`). With the
other capabilities' sweep, the notifies that moved nothing are deleted after
SHENGTU_PAYMENT_NOTIFY_RETENTION_DAYS (:func:`shengtu.payments.service.prune_notifies`)."""

from __future__ import annotations

from shengtu.payments.admin_service import recheck_refunds
from shengtu.payments.service import check_due, prune_notifies
from shengtu.periodic import PeriodicJob

JOBS = (
    PeriodicJob("payments_check", check_due),
    PeriodicJob("payment_refunds_recheck", recheck_refunds),
)
SWEEP_JOBS = (PeriodicJob("payment_notifies_prune", prune_notifies),)
