"""Every value a code-enumerated column takes fits the column: SQLite keeps a string of
any length, MariaDB and PostgreSQL refuse one longer than the column."""

from __future__ import annotations

import pytest
from sqlalchemy import Column

from shengtu.models.payments import NOTIFY_VERDICTS, ORDER_STATUSES, PaymentNotify, PaymentOrder
from shengtu.models.points import LEDGER_KINDS, PointsLedger


@pytest.mark.parametrize(
    ("values", "column"),
    [
        (LEDGER_KINDS, PointsLedger.__table__.c.kind),
        (ORDER_STATUSES, PaymentOrder.__table__.c.status),
        (NOTIFY_VERDICTS, PaymentNotify.__table__.c.verdict),
    ],
)
def test_each_value_fits_its_column(values: tuple[str, ...], column: Column[str]) -> None:
    length = column.type.length  # type: ignore[attr-defined]
    assert [v for v in values if len(v) > length] == []
