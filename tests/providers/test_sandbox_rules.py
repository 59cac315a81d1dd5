"""The sandbox double's small rules, with no server: its job ids carry their state, and it
draws the size asked."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shengtu.providers.sandbox import SIZES, draw_png, new_job_id, parse_directive, parse_job_id
from shengtu.storage.images import sniff_image


def test_sandbox_ids_carry_their_state() -> None:
    job = new_job_id("2:3", "timeout", 1_700_000_000_123)
    assert parse_job_id(job) == (1_700_000_000_123, "2:3", "timeout")
    assert parse_job_id("image_nope") is None
    assert parse_directive("猫 [sandbox:badimage]") == "badimage"
    assert parse_directive("猫 [sandbox:unknown]") == ""


@pytest.mark.parametrize("size", list(SIZES))
def test_sandbox_draws_the_asked_size(size: str) -> None:
    png = draw_png("一只猫", size, "image_x")
    info = sniff_image(png)
    assert (info.width, info.height) == SIZES[size] and info.ext == "png"
    assert Image.open(io.BytesIO(png)).text["prompt"] == "一只猫"  # type: ignore[attr-defined]
