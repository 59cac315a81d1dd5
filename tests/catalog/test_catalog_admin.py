"""The catalog is editable by admins (issue 12): a price applies to every submit after the
change, in every API process at once, and a task keeps (and is refunded) what it paid."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import Platform, free_port, wait_http

MODEL = "sc_soraimg_text_1x1"


def test_admins_edit_the_catalog_and_a_price_applies_to_later_submits_only(
    tmp_path: Path,
) -> None:
    # No worker: tasks stay unsent, so a cancel refunds them whole.
    platform = Platform(tmp_path, worker=False).start()
    try:
        assert platform.admin is not None
        admin = platform.admin.client
        # A second API process on the same database, whose catalog cache is warm.
        port = free_port()
        other_url = f"http://127.0.0.1:{port}"
        other = platform.spawn(
            "serve", "--no-worker", env={**platform.env, "SHENGTU_PORT": str(port)}
        )
        wait_http(other_url + "/healthz", other)
        user = platform.new_user(points=200)
        auth = {"Authorization": f"Bearer {user.token}"}
        assert httpx.get(other_url + "/user/ai/models", headers=auth).json()["code"] == 200

        listed = admin.get("/admin/models").json()["data"]
        assert len(listed) == 8 and listed[0]["upstreamModel"] == "image_gpt"
        first = user.submit(modelName=MODEL, prompt="旧价")["data"]
        assert user.balance() == 200 - 30

        changed = admin.put(f"/admin/models/{MODEL}", json={"pointsCost": 50}).json()
        assert changed["code"] == 200 and changed["data"]["pointsCost"] == 50, changed
        # The other process charges the new price at once, its cache notwithstanding.
        second = httpx.post(
            other_url + "/user/ai/tasks/submit",
            headers=auth,
            json={"modelName": MODEL, "prompt": "新价"},
        ).json()
        assert second["code"] == 200, second
        assert user.balance() == 200 - 30 - 50

        # Each task is refunded what it paid.
        for task_no in (first["taskNo"], second["data"]["taskNo"]):
            assert user.client.post(f"/user/ai/tasks/{task_no}/cancel").json()["code"] == 200
        assert user.balance() == 200

        # A disabled model is refused, in every process, and charges nothing.
        admin.put(f"/admin/models/{MODEL}", json={"enabled": False})
        refused = httpx.post(
            other_url + "/user/ai/tasks/submit",
            headers=auth,
            json={"modelName": MODEL, "prompt": "停用"},
        ).json()
        assert refused["code"] == 400 and "已停用" in refused["message"], refused
        assert user.balance() == 200

        made = admin.post(
            "/admin/models",
            json={
                "modelName": "flux-schnell",
                "description": "Flux 快速",
                "pointsCost": 10,
                "upstreamModel": "image_gpt",
                "upstreamParams": {"size": "1:1"},
                "sortOrder": 100,
            },
        ).json()
        assert made["code"] == 200 and made["data"]["enabled"] is True, made
        names = [m["modelName"] for m in user.client.get("/user/ai/models").json()["data"]]
        assert "flux-schnell" in names and MODEL not in names
        assert user.submit(modelName="flux-schnell", prompt="新模型")["code"] == 200
        assert user.balance() == 190

        again = admin.post(
            "/admin/models",
            json={
                "modelName": "flux-schnell",
                "description": "x",
                "pointsCost": 1,
                "upstreamModel": "x",
            },
        ).json()
        assert again["code"] == 409 and "已存在" in again["message"]
        bad = admin.put(f"/admin/models/{MODEL}", json={"pointsCost": -1}).json()
        assert bad["code"] == 400, bad
        assert admin.put("/admin/models/nope", json={"pointsCost": 1}).json()["code"] == 404
        assert user.client.get("/admin/models").status_code == 403
        assert user.client.put(f"/admin/models/{MODEL}", json={"pointsCost": 0}).status_code == 403
        platform.audit()
    finally:
        platform.stop()
