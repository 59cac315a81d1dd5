"""Failed redemptions are limited (guessing), a good code is not (issue 20, item 8).

An account's failures are limited, and past them its codes are still checked a few times
per window: a good one is credited, a bad one is a 429 that does not say what was wrong.
Behind one address, new accounts share one pool of failures and older accounts another,
much larger, so that neither a guesser's fresh accounts nor one noisy neighbour lock the
others out; each account keeps its own budget.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from shengtu.db import Database, utcnow
from shengtu.models.accounts import User as UserRow
from tests.support import Platform, RedisServer, User

THROTTLED = "兑换失败次数过多"


def _ok(body: dict[str, Any]) -> Any:
    assert body["code"] == 200, body
    return body["data"]


def _unused(platform: Platform) -> int:
    assert platform.admin is not None
    listed = platform.admin.client.get("/admin/codes", params={"state": "unused"})
    return int(_ok(listed.json())["total"])


def _statuses(user: User, guesses: list[str]) -> list[int]:
    return [user.redeem(g)["code"] for g in guesses]


def _age(platform: Platform, users: list[User], hours: float) -> None:
    """Make ``users`` older than they are, as if they signed up ``hours`` ago."""

    async def go() -> None:
        db = Database(platform.settings().resolved_database_url)
        try:
            async with db.write() as session:
                await session.execute(
                    update(UserRow)
                    .where(UserRow.username.in_([u.name for u in users]))
                    .values(created_at=utcnow() - timedelta(hours=hours))
                )
        finally:
            await db.dispose()

    asyncio.run(go())


def test_a_good_code_is_credited_after_the_failure_budget_and_guesses_stay_bounded(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        worker=False,
        SHENGTU_REDEEM_FAILURES_PER_WINDOW="3",
        SHENGTU_REDEEM_LATE_CHECKS_PER_WINDOW="2",
    ) as platform:
        good, spare = platform.make_codes(2, 30)
        user = platform.new_user()
        assert _statuses(user, [f"ST-TYPO-{i}" for i in range(3)]) == [400, 400, 400]
        # Past the budget a good code is no guess: it is credited.
        assert _ok(user.redeem(good)) == {"points": 30, "balance": 30}
        # A bad one is refused without saying why: an unknown code and a used one alike.
        unknown, used = user.redeem("ST-TYPO-X"), user.redeem(good)
        assert unknown["code"] == used["code"] == 429, (unknown, used)
        assert THROTTLED in unknown["message"]
        assert re.sub(r"\d+", "N", unknown["message"]) == re.sub(r"\d+", "N", used["message"])
        # Those were the account's late checks: now nothing is checked, not even a good
        # code, so guesses stay bounded (3 + 2 per window).
        refused = user.client.post("/user/points/redeem", json={"code": spare})
        assert refused.status_code == 429 and THROTTLED in refused.json()["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert _unused(platform) == 1
        assert user.balance() == 30
        # Another account behind the same address has its own budget.
        other = platform.new_user()
        assert _ok(other.redeem(spare)) == {"points": 30, "balance": 30}
        platform.audit()


def test_accounts_behind_one_address_are_not_locked_out_by_others(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        worker=False,
        SHENGTU_REDEEM_FAILURES_PER_WINDOW="3",
        SHENGTU_REDEEM_IP_FAILURES_PER_WINDOW="4",
        SHENGTU_REDEEM_IP_ESTABLISHED_FAILURES_PER_WINDOW="5",
        SHENGTU_REDEEM_NEW_ACCOUNT_HOURS="24",
        SHENGTU_REDEEM_LATE_CHECKS_PER_WINDOW="1",
    ) as platform:
        first, second = platform.make_codes(2, 7)
        older = [platform.new_user() for _ in range(2)]
        _age(platform, older, hours=48)
        fresh = [platform.new_user() for _ in range(3)]
        # New accounts (a guesser's) share the address's pool for new accounts: one uses
        # its own 3 failures, the next fills the pool's fourth.
        assert _statuses(fresh[0], [f"ST-A-{i}" for i in range(3)]) == [400, 400, 400]
        assert _statuses(fresh[1], ["ST-B-0", "ST-B-1"]) == [400, 429]
        # A new neighbour may not guess now; but its good code is checked and credited.
        assert _ok(fresh[2].redeem(first)) == {"points": 7, "balance": 7}
        # Older accounts behind the same address keep theirs, shared with no new one.
        assert _statuses(older[0], [f"ST-C-{i}" for i in range(3)]) == [400, 400, 400]
        # Many older accounts are bounded too: the address's pool for them holds 5.
        assert _statuses(older[1], ["ST-D-0", "ST-D-1", "ST-D-2"]) == [400, 400, 429]
        assert _statuses(older[1], [second]) == [429]  # its late check is spent
        assert _unused(platform) == 1


def test_redemption_budgets_are_shared_by_api_processes_through_redis(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    platform = Platform(
        tmp_path,
        worker=False,
        SHENGTU_REDIS_URL=redis.url,
        SHENGTU_REDEEM_FAILURES_PER_WINDOW="2",
        SHENGTU_REDEEM_LATE_CHECKS_PER_WINDOW="1",
    ).start()
    try:
        other = platform.serve_another()
        good, spare = platform.make_codes(2, 11)
        user = platform.new_user()
        assert _statuses(user, ["ST-E-0", "ST-E-1"]) == [400, 400]
        # The other process knows the budget is spent, and checks the good code late.
        assert _ok(user.redeem(good, other)) == {"points": 11, "balance": 11}
        assert user.redeem("ST-E-2", other)["code"] == 429
        # The late check is spent in both.
        assert user.redeem(spare)["code"] == 429
        assert _unused(platform) == 1
    finally:
        platform.stop()
        redis.stop()


def test_failed_redemptions_are_throttled_per_user_and_per_address(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        worker=False,
        SHENGTU_REDEEM_FAILURES_PER_WINDOW="3",
        SHENGTU_REDEEM_IP_FAILURES_PER_WINDOW="5",
    ).start()
    try:
        codes = platform.make_codes(2, 9)
        first, second = platform.new_user(), platform.new_user()
        assert [first.redeem(f"ST-WRONG-{i}")["code"] for i in range(4)] == [400, 400, 400, 429]
        # Past its failures the user's right code is still checked (a late check), and
        # credited: a good code is no guess (the tests above).
        assert first.redeem(codes[0])["code"] == 200
        # Another account from the same address: the address has 2 failures left.
        assert [second.redeem(f"ST-BAD-{i}")["code"] for i in range(3)] == [400, 400, 429]
        third = platform.new_user()
        assert third.redeem("ST-BAD-3")["code"] == 429
        assert third.redeem(codes[1])["code"] == 200
        assert _unused(platform) == 0
    finally:
        platform.stop()
