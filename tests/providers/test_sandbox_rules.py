"""The sandbox double's small rules, with no server: its job ids carry their state, and it
draws the size asked."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shengtu.providers.sandbox import (
    SIZES,
    delivered,
    draw_png,
    job_count,
    new_job_id,
    parse_directive,
    parse_job_id,
    parse_picture_id,
    picture_id,
)
from shengtu.storage.images import sniff_image


def test_sandbox_ids_carry_their_state() -> None:
    job = new_job_id("2:3", "timeout", 1_700_000_000_123)
    assert parse_job_id(job) == (1_700_000_000_123, "2:3", "timeout")
    assert parse_job_id("image_nope") is None
    assert parse_directive("猫 [sandbox:badimage]") == "badimage"
    assert parse_directive("猫 [sandbox:unknown]") == ""
    assert parse_directive("猫 [sandbox:fewer]") == "fewer"


def test_sandbox_ids_carry_how_many_pictures_and_old_ids_still_parse() -> None:
    old = "image_0123456789ab-18bcfe56c7b-sn"  # an id made before counts
    assert parse_job_id(old) == (0x18BCFE56C7B, "1:1", "")
    assert job_count(old) == 1 and new_job_id("1:1", "", 1).count("-") == 2
    job = new_job_id("3:2", "fewer", 1_700_000_000_123, count=4)
    assert job.endswith("-n4")
    assert parse_job_id(job) == (1_700_000_000_123, "3:2", "fewer")
    assert job_count(job) == 4 and delivered(4, "fewer") == 3
    assert delivered(1, "fewer") == 1 and delivered(4, "") == 4
    # Each picture it delivers has an id of its own; the first is the job's.
    pictures = [picture_id(job, index) for index in range(3)]
    assert pictures[0] == job and len(set(pictures)) == 3
    assert [parse_picture_id(p) for p in pictures] == [(job, 0), (job, 1), (job, 2)]
    assert parse_picture_id(picture_id(job, 3)) is None  # the one ``fewer`` did not make
    assert parse_picture_id(picture_id(old, 1)) is None
    assert parse_picture_id("image_nope-i1") is None
    # A portrait result404 job ends in "p4": a job's id, not a picture's index.
    portrait = new_job_id("2:3", "result404", 1_700_000_000_123)
    assert portrait.endswith("-p4") and parse_picture_id(portrait) == (portrait, 0)


@pytest.mark.parametrize("size", list(SIZES))
def test_sandbox_draws_the_asked_size(size: str) -> None:
    png = draw_png("一只猫", size, "image_x")
    info = sniff_image(png)
    assert (info.width, info.height) == SIZES[size] and info.ext == "png"
    assert Image.open(io.BytesIO(png)).text["prompt"] == "一只猫"  # type: ignore[attr-defined]
