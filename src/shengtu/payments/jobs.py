"""Payments' periodic work: every pending order whose next question has come is asked
about at its provider (:func:`shengtu.payments.service.check_due`), so a lost notify is
repaired without anyone; expired orders are closed. Run by every worker, every
SHENGTU_PAYMENT_CHECK_SECONDS (the orders' own back-off spaces the questions)."""

from __future__ import annotations

from shengtu.payments.service import check_due
from shengtu.periodic import PeriodicJob

JOBS = (PeriodicJob("payments_check", check_due),)
