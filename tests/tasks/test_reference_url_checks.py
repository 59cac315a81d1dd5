"""Cheap refusals come before any name lookup, and URLs handed upstream use web ports
only (issue 11's security review, findings 6 and 12)."""

from __future__ import annotations

import socket

from tests.support import Platform


def test_a_zero_point_account_costs_no_name_lookup(platform: Platform) -> None:
    user = platform.new_user()
    # This machine's own name resolves to a loopback or private address: looked up, it is
    # refused as private (400); the balance check first answers 402 without a lookup.
    own_name = socket.gethostname()
    r = user.client.post(
        "/user/ai/tasks/submit",
        json={
            "modelName": "sc_soraimg_img2img_1x1",
            "prompt": "查余额在先",
            "imageUrl": f"https://{own_name}/a.png",
        },
    )
    assert r.status_code == 402, r.json()


def test_reference_urls_go_upstream_on_web_ports_only(platform: Platform) -> None:
    user = platform.new_user(points=100)
    for url in ("https://93.184.216.34:8443/a.png", "http://unresolvable.example:6379/a.png"):
        r = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="端口", imageUrl=url)
        assert r["code"] == 400 and "只允许端口" in r["message"], r
    assert user.balance() == 100
