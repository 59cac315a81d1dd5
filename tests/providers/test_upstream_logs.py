"""Prompts and upstream bodies are not logged whole at INFO (issue 11's security review,
finding 13)."""

from __future__ import annotations

import os

from tests.support import Platform


def test_prompts_and_upstream_bodies_are_not_logged_whole(platform: Platform) -> None:
    user = platform.new_user(points=30)
    secret_words = "我的私密提示词-" + os.urandom(4).hex()
    done = user.wait(
        user.submit(modelName="sc_soraimg_text_1x1", prompt=secret_words)["data"]["taskNo"]
    )
    assert done["status"] == "completed"
    log = platform.server.log_text()
    assert "upstream_request" in log and secret_words not in log
