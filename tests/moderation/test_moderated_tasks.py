"""The moderation service in the platform, over real HTTP against its doubles, on SQLite,
MariaDB and PostgreSQL: a prompt it flags refused before the charge; a picture it flags
never delivered (refunded, its URL gone) or held for the operator (approved: delivered;
denied or left undecided: refunded, its URL gone); a service with no verdict letting
things through (fail open) or refusing them (fail closed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from shengtu.moderation.sandbox.aliyun import AliyunGreenDouble
from shengtu.moderation.sandbox.common import IMAGE_500, IMAGE_FLAG, TEXT_500, TEXT_FLAG
from shengtu.moderation.sandbox.openai import OpenAIModerationDouble
from tests.moderation.harness import served
from tests.support import OPENAI_MODELS, SANDBOX_MODEL, Platform, User, ok, wait_for

MODERATED = "内容审核未通过"
COST = 30  # SANDBOX_MODEL's points


def _tasks(user: User) -> int:
    return int(ok(user.client.get("/user/ai/tasks/list", params={"size": 1}))["total"])


def _events(platform: Platform, user: User, **params: Any) -> list[dict[str, Any]]:
    page = ok(
        platform.admin_client.get(
            "/admin/safety/events", params={"userId": user.user_id(), **params}
        )
    )
    return list(page["records"])


def _key(signed: str) -> str:
    """The storage key in a held picture's signed address."""
    return signed.split("/moderation/pictures/", 1)[1].split("?", 1)[0]


def _gone(url: str) -> bool:
    return httpx.get(url).status_code in (404, 410)


def _refused_prompts(platform: Platform, user: User, *, fail_open: bool) -> None:
    """A flagged prompt is refused (400) before the charge and kept for the operator; one
    the service gives no verdict on is refused (503) when failing closed."""
    flagged = user.submit(modelName=SANDBOX_MODEL, prompt=f"一张海报 {TEXT_FLAG}")
    assert flagged["code"] == 400 and flagged["message"].startswith(MODERATED), flagged
    assert flagged["data"]["moderation"]
    (event,) = _events(platform, user, tier="block")
    assert event["prompt"] == f"一张海报 {TEXT_FLAG}"
    assert event["hits"][0]["tier"] == "service"
    if not fail_open:
        down = user.submit(modelName=SANDBOX_MODEL, prompt=f"一张海报 {TEXT_500}")
        assert down["code"] == 503 and "内容审核服务暂不可用" in down["message"], down
    assert _tasks(user) == 0


def test_aliyun_refuses_before_the_charge_and_a_refused_picture_is_never_served(
    own_platform: Callable[..., Platform],
) -> None:
    double = AliyunGreenDouble(slow_seconds=2)
    with (
        served(double) as service,
        own_platform(
            **service.settings(),
            SHENGTU_MODERATION_FAIL="closed",
            SHENGTU_MODERATION_IMAGES="reject",
            SHENGTU_MODERATION_TIMEOUT_SECONDS="1",
            SHENGTU_TASK_DEADLINE="20",
        ) as platform,
    ):
        # An upstream that answers with the picture itself (OpenAI Images, b64_json):
        # the picture is seen before the task is completed in the submit's step.
        sandbox, key = platform.openai_sandbox()
        inline_model = OPENAI_MODELS[0]
        platform.add_channel(
            protocol="openai_images",
            name="OpenAI",
            baseUrl=sandbox,
            addKeys=[key],
            models=[{"modelName": inline_model, "upstreamModel": "gpt-image-1"}],
        )
        user = platform.new_user(points=300)
        _refused_prompts(platform, user, fail_open=False)
        assert user.balance() == 300

        numbers = user.submit_all(
            {
                "clean": (SANDBOX_MODEL, "一片安静的湖", None),
                "flagged": (SANDBOX_MODEL, f"湖边 {IMAGE_FLAG}", None),
                "inline": (inline_model, f"山谷 {IMAGE_FLAG}", None),
                "down": (SANDBOX_MODEL, f"雪山 {IMAGE_500}", None),
            }
        )
        ended = {case: user.wait(number) for case, number in numbers.items()}
        clean = ended["clean"]
        assert clean["status"] == "completed", clean
        assert httpx.get(clean["resultUrl"]).status_code == 200
        for case in ("flagged", "inline"):
            task = ended[case]
            assert task["status"] == "failed", task
            assert task["errorMessage"].startswith(MODERATED) and not task["resultUrl"], task
            # The picture the service was shown (by its URL) is deleted.
            (url,) = [s.subject for s in double.seen if numbers[case] in s.subject]
            assert _gone(url), url
        down = ended["down"]
        assert down["status"] == "failed" and "内容审核服务不可用" in down["errorMessage"], down
        (url,) = [s.subject for s in double.seen if numbers["down"] in s.subject]
        assert _gone(url)
        # Only the delivered picture is paid for.
        assert user.balance() == 300 - COST
        assert not _events(platform, user, tier="image")
        platform.audit()


def test_openai_holds_flagged_pictures_for_the_operator_and_fails_open(
    own_platform: Callable[..., Platform],
) -> None:
    double = OpenAIModerationDouble(slow_seconds=2)
    with (
        served(double) as service,
        own_platform(
            **service.settings(),
            SHENGTU_MODERATION_FAIL="open",
            SHENGTU_MODERATION_IMAGES="hold",
            SHENGTU_MODERATION_HOLD_HOURS="0.003",  # 10.8 s
            SHENGTU_MODERATION_TIMEOUT_SECONDS="1",
            SHENGTU_TASK_DEADLINE="20",
        ) as platform,
    ):
        user = platform.new_user(points=300)
        _refused_prompts(platform, user, fail_open=True)
        numbers = user.submit_all(
            {
                # No verdict on the prompt, then none on the picture: both let through.
                "prompt_down": (SANDBOX_MODEL, f"一座桥 {TEXT_500}", None),
                "picture_down": (SANDBOX_MODEL, f"一座塔 {IMAGE_500}", None),
                "approved": (SANDBOX_MODEL, f"一只猫 {IMAGE_FLAG}", None),
                "denied": (SANDBOX_MODEL, f"一只狗 {IMAGE_FLAG}", None),
                "undecided": (SANDBOX_MODEL, f"一只鸟 {IMAGE_FLAG}", None),
            }
        )
        for case in ("prompt_down", "picture_down"):
            task = user.wait(numbers[case])
            assert task["status"] == "completed", task
            assert httpx.get(task["resultUrl"]).status_code == 200
        held = wait_for(
            "three tasks held for review",
            lambda: (
                (e := _events(platform, user, tier="image", state="open")) and len(e) == 3 and e
            ),
        )
        by_task = {e["taskNo"]: e for e in held}
        for case in ("approved", "denied", "undecided"):
            task = user.task(numbers[case])
            # Waiting, with no picture handed out; the operator sees it.
            assert task["status"] == "processing" and not task["resultUrl"], task
            (picture,) = by_task[numbers[case]]["pictures"]
            assert picture["flagged"] and httpx.get(picture["url"]).status_code == 200
            # Only at that signed address: not at /files/, nor with a forged signature.
            assert _gone(picture["url"].replace("signature=", "signature=0"))
            assert _gone(platform.url + "/files/" + _key(picture["url"]))
        admin = platform.admin_client

        def decide(case: str, decision: str) -> dict[str, Any]:
            event = by_task[numbers[case]]
            return admin.post(  # type: ignore[no-any-return]
                f"/admin/safety/events/{event['id']}/decision", json={"decision": decision}
            ).json()

        assert decide("approved", "approve")["data"]["decision"] == "approve"
        assert decide("denied", "deny")["data"]["decision"] == "deny"
        assert decide("denied", "approve")["code"] == 400  # decided once
        approved = user.wait(numbers["approved"])
        assert approved["status"] == "completed", approved
        assert approved["resultUrl"].endswith(
            _key(by_task[numbers["approved"]]["pictures"][0]["url"])
        )
        assert httpx.get(approved["resultUrl"]).status_code == 200
        denied = user.wait(numbers["denied"])
        assert denied["status"] == "failed" and denied["errorMessage"].startswith(MODERATED)
        assert _gone(by_task[numbers["denied"]]["pictures"][0]["url"])
        # Nobody decided: the hold ends, failed and refunded.
        undecided = user.wait(numbers["undecided"], timeout=40)
        assert undecided["status"] == "failed", undecided
        assert (
            undecided["errorMessage"].startswith(MODERATED)
            and "人工审核超时" in undecided["errorMessage"]
        )
        assert _gone(by_task[numbers["undecided"]]["pictures"][0]["url"])
        assert user.balance() == 300 - 3 * COST
        # Every decision is in the audit log.
        assert platform.audit_entries(f"event:{by_task[numbers['denied']]['id']}")
        platform.audit()
