"""``make run``'s sandbox payment: a 易支付 method named ``sandbox`` served by the EPay
double inside the sandbox upstream (on loopback), and a few tiers, so the whole top-up
can be tried by hand in the console. ``shengtu demo`` adds them (the operator's choice:
a sandbox method gives points for no money, so it is never made unasked); each start
with the sandbox points the method at the running double, and a start without it
turns the method off."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import func, select

from shengtu.channels.secrets import KeyBox
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.logs import get_logger
from shengtu.models.payments import PaymentMethod, PaymentTier

log = get_logger("shengtu.payments")

SANDBOX_METHOD = "sandbox"
SANDBOX_PID = "1000"
# Until a start with the sandbox says where it listens.
UNSERVED = "http://127.0.0.1:9/epay"
# (amount in fen, points, bonus)
# (amount in fen, points, bonus, label): the card shows the price and points itself, so a
# label says what the tier is for.
DEMO_TIERS = (
    (1000, 1000, 0, "体验"),
    (3000, 3000, 300, "常用"),
    (10000, 10000, 1500, "超值"),
)


def sandbox_merchant_key(settings: Settings) -> str:
    """The sandbox merchant's EPay key, derived from the operator's secret: stable across
    restarts, never the same on two installations."""
    secret = settings.resolved_jwt_secret().encode()
    return hmac.new(secret, b"shengtu-sandbox-epay", hashlib.sha256).hexdigest()[:32]


async def add_sandbox_payment(db: Database, key_box: KeyBox, settings: Settings) -> bool:
    """The ``sandbox`` method (on) and the demo tiers, where there are none yet; whether
    the method was added."""
    async with db.write() as session:
        if not await session.scalar(select(func.count()).select_from(PaymentTier)):
            session.add_all(
                PaymentTier(
                    amount=amount,
                    points=points,
                    bonus=bonus,
                    label=label,
                    enabled=True,
                    created_at=utcnow(),
                )
                for amount, points, bonus, label in DEMO_TIERS
            )
        if await session.get(PaymentMethod, SANDBOX_METHOD) is not None:
            return False
        session.add(
            PaymentMethod(
                key=SANDBOX_METHOD,
                kind="epay",
                label="沙箱支付(易支付模拟,不收真钱)",
                enabled=True,
                config={
                    "gateway": UNSERVED,
                    "pid": SANDBOX_PID,
                    "mode": "submit",
                    "type": "alipay",
                },
                sealed={"key": key_box.seal(sandbox_merchant_key(settings))},
                sort_order=999,
                updated_at=utcnow(),
            )
        )
    return True


async def sync_sandbox_payment(
    db: Database, key_box: KeyBox, settings: Settings, gateway: str | None
) -> None:
    """Point the ``sandbox`` method (if the operator has it) at the double now served at
    ``gateway``; with no sandbox running (None), turn it off."""
    async with db.write() as session:
        method = await session.get(PaymentMethod, SANDBOX_METHOD)
        if method is None or method.kind != "epay":
            return
        if gateway is None:
            if method.enabled:
                method.enabled = False
                log.warning("sandbox_payment_disabled", reason="沙箱上游未运行,沙箱支付已停用")
            return
        method.config = {**(method.config or {}), "gateway": gateway, "pid": SANDBOX_PID}
        method.sealed = {"key": key_box.seal(sandbox_merchant_key(settings))}
        method.updated_at = utcnow()
