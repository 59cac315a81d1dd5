"""A model's parameters and price rule over the API (issue 22): the operator defines them at
/admin/models (a definition that cannot be sold is refused and changes nothing), users see
them at /user/ai/models, a quote prices a request for the caller without charging, and a
native submit with parameters is charged exactly the quote. On SQLite, MariaDB and
PostgreSQL (the shared platform); the ledger audit passes after the tests that charge."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Platform, User, ok

SPEC_FIELDS = {"modelName", "description", "pointsCost", "taskType", "aspectRatio"}
PARAMETERS = {
    "choices": {
        # The sandbox's 速创 upstream spells sizes as aspect ratios.
        "size": {
            "values": ["1024x1024", "1024x1536", "1536x1024"],
            "default": "1024x1024",
            "map": {"1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2"},
        },
        "quality": {"values": ["low", "medium", "high"], "default": "medium"},
    },
    "maxN": 4,
    "maxReferences": 2,
}
# Base 40; the tall and wide sizes ×1.5; low and high at fixed prices; 5 a reference image.
RULE = {
    "choices": {
        "size": {"1024x1536": {"times": "1.5"}, "1536x1024": {"times": "1.5"}},
        "quality": {"low": {"points": 10}, "high": {"points": 160}},
    },
    "perReference": 5,
}
EN = {"Accept-Language": "en"}


# Every model these tests add is named so.
PREFIX = "pm-"


def _name(kind: str = "m") -> str:
    return f"{PREFIX}{kind}-{secrets.token_hex(4)}"


def _create(platform: Platform, name: str, **fields: Any) -> httpx.Response:
    body = {
        "modelName": name,
        "description": f"参数模型 {name}",
        "pointsCost": 40,
        "taskType": "both",
        "upstreamModel": "image_gpt",
        **fields,
    }
    return platform.admin_client.post("/admin/models", json=body)


@pytest.fixture
def shared(platform: Platform) -> Iterator[Platform]:
    """The shared platform; the models a test adds are disabled after it, so that the
    catalog the other tests see (the spec's eight, the cheapest edit) is as it was."""
    yield platform
    for model in ok(platform.admin_client.get("/admin/models")):
        if model["enabled"] and model["modelName"].startswith(PREFIX):
            name = model["modelName"]
            ok(platform.admin_client.put(f"/admin/models/{name}", json={"enabled": False}))


def _model(platform: Platform, **fields: Any) -> str:
    name = _name()
    made = ok(_create(platform, name, parameters=PARAMETERS, priceRule=RULE, **fields))
    assert made["modelName"] == name
    return name


def _admin_view(platform: Platform, name: str) -> dict[str, Any] | None:
    listed = ok(platform.admin_client.get("/admin/models"))
    return next((m for m in listed if m["modelName"] == name), None)


def _grouped_user(platform: Platform, multiplier: str, points: int) -> User:
    group = "g-" + secrets.token_hex(4)
    ok(platform.admin_client.post("/admin/groups", json={"name": group, "multiplier": multiplier}))
    user = platform.new_user(points=points)
    ok(platform.admin_client.put(f"/admin/users/{user.user_id()}", json={"group": group}))
    return user


def _quote(user: User, name: str, **body: Any) -> httpx.Response:
    return user.client.post("/user/ai/quote", json={"modelName": name, **body})


def _task_total(user: User) -> int:
    return int(ok(user.client.get("/user/ai/tasks/list?size=1"))["total"])


def _ledger(user: User, task_no: str) -> dict[str, int]:
    """The task's ledger rows: {kind: delta}."""
    rows = ok(user.client.get("/user/points/consumption/records?size=100"))["records"]
    return {r["kind"]: r["delta"] for r in rows if r["taskNo"] == task_no}


def test_an_operator_defines_parameters_and_a_rule_and_users_see_them(shared: Platform) -> None:
    platform = shared
    name = _model(platform)
    shown = _admin_view(platform, name)
    assert shown is not None and shown["taskType"] == "both"
    assert shown["parameters"] == PARAMETERS
    # Stored in its one spelling: a number of times as a string, fixed points as numbers.
    assert shown["priceRule"] == RULE
    # A model without them shows empty ones to the operator.
    spec = _admin_view(platform, "sc_soraimg_text_1x1")
    assert spec is not None and spec["parameters"] == {} and spec["priceRule"] == {}

    user = platform.new_user()
    models = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
    assert models[name]["parameters"] == PARAMETERS and models[name]["priceRule"] == RULE
    assert models[name]["taskType"] == "both"
    # The spec's eight answer with the spec's fields alone.
    spec_rows = [m for m in models.values() if m["modelName"].startswith("sc_soraimg_")]
    assert len(spec_rows) == 8
    assert all(set(m) == SPEC_FIELDS for m in spec_rows), spec_rows

    # A rule changed alone is checked against the parameters in force, and shown at once.
    cheaper = {"choices": {"quality": {"high": {"points": 120}}}}
    changed = ok(platform.admin_client.put(f"/admin/models/{name}", json={"priceRule": cheaper}))
    assert changed["priceRule"] == cheaper and changed["parameters"] == PARAMETERS
    models = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
    assert models[name]["priceRule"] == cheaper
    # {} clears: one price again, nothing to choose, and the spec's fields alone.
    ok(platform.admin_client.put(f"/admin/models/{name}", json={"parameters": {}, "priceRule": {}}))
    models = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
    assert set(models[name]) == SPEC_FIELDS

    entries = platform.audit_entries(f"model:{name}")
    assert [e["action"] for e in entries] == ["model.change", "model.change", "model.create"]


def test_a_definition_that_cannot_be_sold_is_refused_and_changes_nothing(
    shared: Platform,
) -> None:
    platform = shared
    admin = platform.admin_client
    refused = {
        "an unknown choice": (
            {"parameters": {"choices": {"colour": {"values": ["red"]}}}},
            "parameters",
            "未知的可选参数 colour",
        ),
        "a default not offered": (
            {"parameters": {"choices": {"size": {"values": ["1:1"], "default": "2:3"}}}},
            "parameters",
            "默认值 2:3 不在 values 中",
        ),
        "two fixed-price parameters": (
            {
                "parameters": PARAMETERS,
                "priceRule": {
                    "choices": {
                        "size": {"1024x1536": {"points": 50}},
                        "quality": {"high": {"points": 160}},
                    }
                },
            },
            "priceRule",
            "只能有一个参数给出固定价格",
        ),
        "a rule pricing a value not offered": (
            {
                "parameters": PARAMETERS,
                "priceRule": {"choices": {"size": {"2048x2048": {"times": 2}}}},
            },
            "priceRule",
            "不提供的取值定价:2048x2048",
        ),
        "a rule pricing a parameter not offered": (
            {"priceRule": {"choices": {"resolution": {"4K": {"times": 2}}}}},
            "priceRule",
            "模型没有的参数 resolution",
        ),
    }
    for case, (fields, part, words) in refused.items():
        name = _name("bad")
        answer = _create(platform, name, **fields).json()
        assert answer["code"] == 400, (case, answer)
        assert answer["message"].startswith("参数错误:") and words in answer["message"], case
        assert answer["data"] == {"field": part}, (case, answer)
        assert _admin_view(platform, name) is None, case
        assert platform.audit_entries(f"model:{name}") == [], case

    english = admin.post(
        "/admin/models",
        json={
            "modelName": _name("bad"),
            "description": "x",
            "pointsCost": 1,
            "upstreamModel": "x",
            "parameters": {"choices": {"colour": {"values": ["red"]}}},
        },
        headers=EN,
    ).json()
    assert english["code"] == 400
    assert english["message"].startswith("Invalid parameter: unknown choice colour"), english

    # A change that would break the pair is refused whole: the price in the same body too.
    name = _model(platform)
    before = _admin_view(platform, name)
    for body in (
        {"pointsCost": 99, "priceRule": {"choices": {"quality": {"ultra": {"times": 3}}}}},
        # The parameters alone, dropping a value the rule in force prices.
        {"pointsCost": 99, "parameters": {"choices": {"quality": {"values": ["low", "medium"]}}}},
        {"pointsCost": 99, "parameters": {"maxN": 99}},
        {"pointsCost": 99, "taskType": "sometimes"},
    ):
        answer = admin.put(f"/admin/models/{name}", json=body).json()
        assert answer["code"] == 400, (body, answer)
        assert _admin_view(platform, name) == before, body
    assert [e["action"] for e in platform.audit_entries(f"model:{name}")] == ["model.create"]


def test_a_quote_prices_a_request_for_the_caller_without_charging(shared: Platform) -> None:
    platform = shared
    name = _model(platform)
    user = _grouped_user(platform, "1.15", points=1000)

    # The defaults: 40 × 1.15 = 46.
    plain = ok(_quote(user, name))
    assert plain == {
        "modelName": name,
        "each": 46,
        "n": 1,
        "total": 46,
        "balance": 1000,
        "affordable": True,
        "parameters": {"size": "1024x1024", "quality": "medium", "n": 1, "references": 0},
    }
    # 160 × 1.5 = 240, × 1.15 = 276 a picture, three of them.
    tall = ok(_quote(user, name, parameters={"size": "1024x1536", "quality": "high"}, n=3))
    assert (tall["each"], tall["n"], tall["total"]) == (276, 3, 828)
    assert tall["parameters"] == {"size": "1024x1536", "quality": "high", "n": 3, "references": 0}
    # (10 × 1.5 + 2 × 5) × 1.15 = 28.75: rounded up once, to 29.
    wide = {"size": "1536x1024", "quality": "low"}
    counted = ok(_quote(user, name, parameters=wide, references=2))
    assert counted["each"] == 29 and counted["parameters"]["references"] == 2
    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    assert ok(_quote(user, name, parameters=wide, imageUrl=urls))["each"] == 29
    # More than the balance: quoted, and said to be unaffordable.
    dear = ok(_quote(user, name, parameters={"size": "1536x1024", "quality": "high"}, n=4))
    assert dear["total"] == 1104 and dear["affordable"] is False

    # A price change is quoted at once.
    rule = {**RULE, "choices": {**RULE["choices"], "quality": {"high": {"points": 200}}}}
    ok(platform.admin_client.put(f"/admin/models/{name}", json={"priceRule": rule}))
    assert ok(_quote(user, name, parameters={"quality": "high"}))["each"] == 230  # 200 × 1.15

    # An API key quotes as its owner, within the models it may use.
    key = ok(user.client.post("/user/api-keys", json={"name": "quote"}))["key"]
    by_key = httpx.post(
        platform.url + "/user/ai/quote",
        json={"modelName": name},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert by_key["code"] == 200 and by_key["data"]["each"] == 46, by_key
    narrow = ok(
        user.client.post(
            "/user/api-keys", json={"name": "narrow", "allowedModels": ["sc_soraimg_text_1x1"]}
        )
    )["key"]
    kept_out = httpx.post(
        platform.url + "/user/ai/quote",
        json={"modelName": name},
        headers={"Authorization": f"Bearer {narrow}"},
    ).json()
    assert kept_out["code"] == 403
    assert httpx.post(platform.url + "/user/ai/quote", json={"modelName": name}).status_code == 401

    # Refused as a submit would be, naming what is offered.
    refusals = [
        ({"parameters": {"size": "9x9"}}, "size", ["1024x1024", "1024x1536", "1536x1024"]),
        ({"n": 5}, "n", ["1-4"]),
        ({"references": 3}, "imageUrl", ["0-2"]),
        ({"parameters": {"style": "vivid"}}, "style", ["size", "quality"]),
    ]
    for body, param, offered in refusals:
        answer = _quote(user, name, **body).json()
        assert answer["code"] == 400, (body, answer)
        assert answer["data"] == {"param": param, "offered": offered}, (body, answer)
    size = _quote(user, name, parameters={"size": "9x9"}).json()
    assert size["message"] == (
        f"参数错误:模型 {name} 不提供 size=9x9,可选值:1024x1024, 1024x1536, 1536x1024"
    )
    english = user.client.post(
        "/user/ai/quote", json={"modelName": name, "parameters": {"size": "9x9"}}, headers=EN
    ).json()
    assert english["message"] == (
        f"Invalid parameter: model {name} does not offer size=9x9; "
        "offered: 1024x1024, 1024x1536, 1536x1024"
    )
    text_only = _quote(user, "sc_soraimg_text_1x1", references=1).json()
    assert text_only["code"] == 400 and "不接受参考图" in text_only["message"]
    assert _quote(user, "no-such-model").json()["code"] == 400
    assert user.balance() == 1000 and _task_total(user) == 0


def test_a_native_submit_with_parameters_is_charged_the_quote(
    shared: Platform, audited: Platform
) -> None:
    platform = shared
    name = _model(platform)
    user = _grouped_user(platform, "1.15", points=2000)
    asked = {"parameters": {"size": "1024x1536", "quality": "high"}, "n": 3}
    quoted = ok(_quote(user, name, **asked))
    assert quoted["total"] == 828

    first = user.submit(modelName=name, prompt="三张高清竖图", **asked)
    assert first["code"] == 200, first
    task = first["data"]
    assert task["pointsCost"] == quoted["total"] and task["pictures"] == 3
    assert task["parameters"] == quoted["parameters"]
    assert _ledger(user, task["taskNo"])["consume"] == -828

    # The price changes between two submits: the next quote and charge follow at once.
    rule = {**RULE, "choices": {**RULE["choices"], "quality": {"high": {"points": 100}}}}
    ok(platform.admin_client.put(f"/admin/models/{name}", json={"priceRule": rule}))
    again = ok(_quote(user, name, **asked))
    assert (again["each"], again["total"]) == (173, 519)  # 100 × 1.5 × 1.15 = 172.5 → 173
    second = user.submit(modelName=name, prompt="改价之后", **asked)["data"]
    assert second["pointsCost"] == 519
    assert _ledger(user, second["taskNo"])["consume"] == -519

    # Each task keeps its own charge and its parameters. A 速创 job makes one picture:
    # the two not delivered come back, at the price that task was charged.
    for submitted, each in ((task, 276), (second, 173)):
        done = user.wait(submitted["taskNo"], timeout=60)
        assert done["status"] == "completed", done
        assert done["pointsCost"] == 3 * each and done["parameters"] == quoted["parameters"]
        assert done["delivered"] == 1 and done["pointsRefunded"] == 2 * each
        assert _ledger(user, done["taskNo"]) == {"consume": -3 * each, "undelivered": 2 * each}
    delivered = [user.task(t["taskNo"]) for t in (task, second)]
    spent = sum(t["pointsCost"] - t["pointsRefunded"] for t in delivered)
    assert user.balance() == 2000 - spent

    # A value the model does not offer: 400 with the offered values, nothing charged.
    balance, total = user.balance(), _task_total(user)
    refused = user.submit(modelName=name, prompt="x", parameters={"quality": "ultra"})
    assert refused["code"] == 400 and refused["data"] == {
        "param": "quality",
        "offered": ["low", "medium", "high"],
    }
    assert refused["message"] == (
        f"参数错误:模型 {name} 不提供 quality=ultra,可选值:low, medium, high"
    )
    english = user.client.post(
        "/user/ai/tasks/submit",
        json={"modelName": name, "prompt": "x", "n": 9},
        headers=EN,
    ).json()
    assert english["code"] == 400 and english["data"] == {"param": "n", "offered": ["1-4"]}
    assert english["message"] == f"Invalid parameter: model {name} does not offer n=9; offered: 1-4"
    zero = user.submit(modelName=name, prompt="x", n=0)
    assert zero["code"] == 400, zero
    assert user.balance() == balance and _task_total(user) == total

    # A spec model takes no parameters: the spec's request, unchanged, still works.
    spec = user.submit(modelName="sc_soraimg_text_1x1", prompt="原样")["data"]
    assert spec["pictures"] == 1 and spec["pointsCost"] == 35  # 30 × 1.15 = 34.5 → 35
    kept_out = user.submit(modelName="sc_soraimg_text_1x1", prompt="x", parameters={"size": "1:1"})
    assert kept_out["code"] == 400 and kept_out["data"] == {"param": "size", "offered": []}
    user.wait(spec["taskNo"], timeout=60)

    # With an Idempotency-Key a retry is the same task, charged once; the same key with
    # other parameters is another request.
    key = {"Idempotency-Key": "pm-" + secrets.token_hex(4)}
    body = {"modelName": name, "prompt": "幂等", **asked}
    total = _task_total(user)
    once = user.client.post("/user/ai/tasks/submit", json=body, headers=key).json()
    again = user.client.post("/user/ai/tasks/submit", json=body, headers=key).json()
    assert once["code"] == again["code"] == 200, (once, again)
    assert again["data"]["taskNo"] == once["data"]["taskNo"] and _task_total(user) == total + 1
    assert _ledger(user, once["data"]["taskNo"])["consume"] == -519
    other = user.client.post("/user/ai/tasks/submit", json={**body, "n": 2}, headers=key).json()
    assert other["code"] == 422, other
    user.wait(once["data"]["taskNo"], timeout=60)
