"""Idempotency-Key on submit, by Stripe's rules."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support import Platform


def test_fifty_racing_retries_of_one_submit_make_one_task_and_one_charge(
    audited: Platform,
) -> None:
    user = audited.new_user(points=100)
    key = str(uuid.uuid4())
    body = {"modelName": "sc_soraimg_text_1x1", "prompt": "重试五十次的柴犬"}
    headers = {"Authorization": f"Bearer {user.token}", "Idempotency-Key": key}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=audited.url, timeout=60) as c:
            return await asyncio.gather(
                *(c.post("/user/ai/tasks/submit", json=body, headers=headers) for _ in range(50))
            )

    answers = asyncio.run(race())
    assert {r.status_code for r in answers} <= {200, 409}, {r.text for r in answers}
    done = [r.json() for r in answers if r.status_code == 200]
    assert done, "every retry was refused"
    task_nos = {a["data"]["taskNo"] for a in done}
    assert len(task_nos) == 1
    for r in answers:
        if r.status_code == 409:
            assert "仍在处理中" in r.json()["message"]
    assert user.balance() == 70
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 1

    # Later retries replay the first answer, marked as a replay.
    replay = user.client.post("/user/ai/tasks/submit", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    first = next(
        r for r in answers if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    )
    assert replay.json() == first.json()
    # Same parameters in another order are the same request.
    reordered = {"prompt": body["prompt"], "modelName": body["modelName"]}
    assert (
        user.client.post(
            "/user/ai/tasks/submit", json=reordered, headers={"Idempotency-Key": key}
        ).json()["data"]["taskNo"]
        in task_nos
    )

    # Another body under the key: 422, nothing made.
    other = user.client.post(
        "/user/ai/tasks/submit",
        json={**body, "prompt": "另一只猫"},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 422 and other.json()["code"] == 422, other.text
    assert "Idempotency-Key" in other.json()["message"]

    # Keys are per user: another user's same key is theirs alone.
    stranger = audited.new_user(points=30)
    theirs = stranger.client.post(
        "/user/ai/tasks/submit", json=body, headers={"Idempotency-Key": key}
    ).json()
    assert theirs["code"] == 200 and theirs["data"]["taskNo"] not in task_nos
    assert user.balance() == 70 and stranger.balance() == 0
    user.wait(task_nos.pop())


def test_a_refused_submit_keeps_nothing_so_its_retry_runs_afresh(audited: Platform) -> None:
    user = audited.new_user(points=10)
    headers = {"Idempotency-Key": "top-up-then-retry"}
    body = {"modelName": "sc_soraimg_text_1x1", "prompt": "穷"}
    refused = user.client.post("/user/ai/tasks/submit", json=body, headers=headers).json()
    assert refused["code"] == 402, refused
    audited.grant(user.name, 20)
    accepted = user.client.post("/user/ai/tasks/submit", json=body, headers=headers).json()
    assert accepted["code"] == 200, accepted
    assert user.balance() == 0
    bad = user.client.post("/user/ai/tasks/submit", json=body, headers={"Idempotency-Key": "a\tb"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["message"]
    user.wait(accepted["data"]["taskNo"])
