"""The prompt check on every route that takes a prompt (the spec's submit, which the
consoles use, and ``/v1/images/generations`` and ``/edits``), on SQLite, MariaDB and
PostgreSQL: each evasion of a listed word refused before any charge, no ordinary prompt
caught, a masked word never sent upstream, a flagged prompt waiting for the operator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.databases import ScratchDatabase
from tests.safety.corpus import LISTED, ORDINARY, evasions
from tests.support import SANDBOX_MODEL, Platform, User, ok, png

EDIT_MODEL = "sc_soraimg_img2img_1x1"
T = TypeVar("T")
BLOCKED = "提示词含有不允许的内容"
QUOTA = "额度不足"


@pytest.fixture
def listed(audited: Platform) -> Iterator[Platform]:
    """The corpus's words on the shared platform, for this test only."""
    admin = audited.admin_client
    for tier in ("block", "replace", "review"):
        words = [e.word for e in LISTED if e.tier == tier]
        ok(admin.post("/admin/safety/words", json={"words": words, "tier": tier}))
    try:
        yield audited
    finally:
        rows = ok(admin.get("/admin/safety/words", params={"size": 100}))["records"]
        for row in rows:
            ok(admin.delete(f"/admin/safety/words/{row['id']}"))


def _routes(client: httpx.Client) -> dict[str, Callable[[str], tuple[int, str]]]:
    """Each route that takes a prompt: (HTTP status, the error's message) for a prompt."""

    def spec(prompt: str) -> tuple[int, str]:
        body = client.post(
            "/user/ai/tasks/submit", json={"modelName": SANDBOX_MODEL, "prompt": prompt}
        ).json()
        return body["code"], body.get("message", "")

    def generations(prompt: str) -> tuple[int, str]:
        r = client.post("/v1/images/generations", json={"model": SANDBOX_MODEL, "prompt": prompt})
        return r.status_code, r.json().get("error", {}).get("message", "")

    def edits(prompt: str) -> tuple[int, str]:
        r = client.post(
            "/v1/images/edits",
            data={"model": EDIT_MODEL, "prompt": prompt},
            files={"image": ("ref.png", png(), "image/png")},
        )
        return r.status_code, r.json().get("error", {}).get("message", "")

    return {"spec": spec, "generations": generations, "edits": edits}


def _keyed_user(platform: Platform, points: int, quota: int) -> tuple[User, httpx.Client]:
    """A user with ``points`` and an API key that may spend ``quota`` of them: a prompt the
    check lets through is refused by the quota in the charge's transaction, after the
    check, so nothing is charged either way."""
    user = platform.new_user(points=points)
    key = ok(user.client.post("/user/api-keys", json={"name": "安全", "quotaPoints": quota}))
    return user, platform.client(key["key"])


def _tasks(user: User) -> int:
    return int(ok(user.client.get("/user/ai/tasks/list", params={"size": 1}))["total"])


def _sample(cases: list[T], database: ScratchDatabase) -> list[T]:
    """All the corpus on SQLite, where the matcher meets every route; every seventh on
    MariaDB and PostgreSQL, where what differs is only the database under the refusal
    (what is kept, and that nothing is charged)."""
    return cases if database.backend == "sqlite" else cases[::7]


def test_every_evasion_is_refused_on_every_route_and_charges_nothing(
    listed: Platform, database: ScratchDatabase
) -> None:
    user, client = _keyed_user(listed, points=1000, quota=1000)
    blocked_words = {e.word for e in LISTED if e.tier == "block"}
    corpus = [(p, w) for p, w in evasions() if w in blocked_words]
    assert len(corpus) >= 100
    cases = _sample(corpus, database)
    for name, send in _routes(client).items():
        for prompt, _word in cases:
            status, message = send(prompt)
            assert status == 400 and BLOCKED in message, (name, prompt, status, message)
    assert user.balance() == 1000 and _tasks(user) == 0
    # Each refusal is kept for the operator, with the words as the user wrote them.
    events = ok(
        listed.admin_client.get(
            "/admin/safety/events", params={"userId": user.user_id(), "tier": "block"}
        )
    )
    assert events["total"] == 3 * len(cases)
    assert events["records"][0]["hits"][0]["word"] in blocked_words
    # And counted in the operator's stats of the day.
    assert ok(listed.admin_client.get("/admin/stats"))["safety"]["blocked"] >= 3 * len(cases)


def test_no_ordinary_prompt_is_caught_on_any_route(
    listed: Platform, database: ScratchDatabase
) -> None:
    user, client = _keyed_user(listed, points=1000, quota=1)
    for name, send in _routes(client).items():
        for prompt in _sample(list(ORDINARY), database):
            status, message = send(prompt)
            assert status == 403 and QUOTA in message, (name, prompt, status, message)
    assert user.balance() == 1000 and _tasks(user) == 0
    events = ok(listed.admin_client.get("/admin/safety/events", params={"userId": user.user_id()}))
    assert events["total"] == 0


def test_the_refusal_says_why_in_the_users_language(listed: Platform) -> None:
    user = listed.new_user(points=100)
    zh = user.client.post(
        "/user/ai/tasks/submit", json={"modelName": SANDBOX_MODEL, "prompt": "一张 色·情 海报"}
    ).json()
    assert zh["code"] == 400
    assert zh["message"] == "提示词含有不允许的内容:色·情,请修改后再试"
    assert zh["data"] == {"blocked": ["色·情"]}
    en = user.client.post(
        "/user/ai/tasks/submit",
        json={"modelName": SANDBOX_MODEL, "prompt": "a N.U.D.E portrait"},
        headers={"Accept-Language": "en"},
    ).json()
    assert en["message"].startswith("The prompt contains words that are not allowed: N.U.D.E")
    assert user.balance() == 100


def test_a_masked_word_never_goes_upstream_and_a_flagged_prompt_waits_for_review(
    listed: Platform,
) -> None:
    user = listed.new_user(points=100)
    prompt = f"販賣毒品的赌 博场景 {user.user_id()}"
    task = ok(
        user.client.post(
            "/user/ai/tasks/submit", json={"modelName": SANDBOX_MODEL, "prompt": prompt}
        )
    )
    done = user.wait(task["taskNo"])
    assert done["status"] == "completed"
    admin = listed.admin_client
    # What went upstream, as the operator's kept exchanges show it: the word masked.
    exchanges = ok(admin.get(f"/admin/tasks/{task['taskNo']}/exchanges"))["records"]
    submitted = [e["requestBody"] for e in exchanges if e["step"] == "submit"]
    assert submitted and all("販賣**的赌 博场景" in body for body in submitted), submitted
    assert not any("毒品" in (e["requestBody"] or "") for e in exchanges)
    queue = ok(
        admin.get("/admin/safety/events", params={"state": "open", "userId": user.user_id()})
    )
    (event,) = queue["records"]
    assert event["taskNo"] == task["taskNo"] and event["tier"] == "review"
    assert event["prompt"] == prompt  # as the user wrote it, for the operator
    assert {(h["word"], h["text"]) for h in event["hits"]} == {("毒品", "毒品"), ("赌博", "赌 博")}
    decided = ok(
        admin.post(f"/admin/safety/events/{event['id']}/decision", json={"decision": "deny"})
    )
    assert decided["decision"] == "deny"
    again = admin.post(f"/admin/safety/events/{event['id']}/decision", json={"decision": "approve"})
    assert again.json()["code"] == 400
    assert listed.audit_entries(f"event:{event['id']}")[0]["action"] == "safety.deny"


def test_the_operator_tries_a_prompt_and_the_list_skips_what_it_holds(listed: Platform) -> None:
    admin = listed.admin_client
    tried = ok(admin.post("/admin/safety/try", json={"prompt": "ＳＥＸ and cocaine"}))
    assert tried["verdict"] == "block"
    assert [h["text"] for h in tried["hits"]] == ["ＳＥＸ", "cocaine"]
    assert tried["prompt"] == "ＳＥＸ and *******"
    added = ok(
        admin.post("/admin/safety/words", json={"words": ["色 情", "  ", "新词"], "tier": "review"})
    )
    assert added["added"] == 1 and sorted(added["skipped"]) == ["", "色 情"]
    bad: Any = admin.post("/admin/safety/words", json={"words": ["x"], "tier": "ban"}).json()
    assert bad["code"] == 400


def test_strikes_disable_a_user_when_the_setting_asks(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(worker=False, SHENGTU_SAFETY_STRIKES="2") as platform:
        ok(
            platform.admin_client.post(
                "/admin/safety/words", json={"words": ["色情"], "tier": "block"}
            )
        )
        user = platform.new_user(points=100)
        user_id = user.user_id()
        for _ in range(2):
            body = user.client.post(
                "/user/ai/tasks/submit", json={"modelName": SANDBOX_MODEL, "prompt": "色情"}
            ).json()
            assert body["code"] == 400
        # Disabled: the token no longer works.
        assert user.client.get("/user/points/consumption/balance").json()["code"] == 401
        entry = platform.audit_entries(f"user:{user_id}")[0]
        assert entry["action"] == "safety.strikes_disable"
