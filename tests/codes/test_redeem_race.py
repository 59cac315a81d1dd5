"""A code is credited once however many redemptions race for it, one user's (issue 11's
security review, finding 2) or several users' (issue 13)."""

from __future__ import annotations

import concurrent.futures

from tests.support import Platform, cli


def test_redeeming_a_code_works_once_even_when_raced(audited: Platform) -> None:
    code = cli(audited.env, "codes", "create", "--points", "40").stdout.strip()
    user = audited.new_user()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: user.redeem(code),
                range(20),
            )
        )
    assert sum(a["code"] == 200 for a in answers) == 1, answers
    # The others: the code is used, or (past 10 failed tries) this user is throttled.
    assert all(
        ("已被使用" in a["message"]) or (a["code"] == 429 and "兑换失败次数过多" in a["message"])
        for a in answers
        if a["code"] != 200
    ), answers
    assert user.balance() == 40
    kinds = [
        r["kind"]
        for r in user.client.get("/user/points/consumption/records").json()["data"]["records"]
    ]
    assert kinds == ["redeem"]


def test_fifty_racing_redemptions_of_one_code_credit_it_once(audited: Platform) -> None:
    (code,) = audited.make_codes(1, 70)
    users = [audited.new_user() for _ in range(5)]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(
            pool.map(
                lambda i: users[i % 5].redeem(code),
                range(50),
            )
        )
    assert sum(a["code"] == 200 for a in answers) == 1, answers
    assert sum(u.balance() for u in users) == 70
