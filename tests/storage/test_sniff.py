"""Sniffing a picture refuses what is not a whole picture, or one too large to decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shengtu.providers.sandbox import draw_png
from shengtu.storage.images import NotAnImage, sniff_image


def test_sniff_refuses_what_is_not_a_whole_picture() -> None:
    png = draw_png("x", "1:1", "image_x")
    for bad in (b"", b"<html></html>", png[: len(png) // 2]):
        with pytest.raises(NotAnImage):
            sniff_image(bad)
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")
    with pytest.raises(NotAnImage):
        sniff_image(bomb.getvalue())
