"""The visible label: a short text ("AI生成") in a corner of the picture, its height a share
of the picture's shorter side (GB 45438-2025 asks for at least 5 %), white with a dark
outline so it reads on any background, at the operator's opacity.

The text needs a font with its characters. The operator may name one; else the first CJK
font found on the usual paths (Debian's fonts-wqy-microhei, Noto CJK …). Where no font can
draw the text, the label falls back to ``FALLBACK_TEXT`` in whatever font there is, and
says so in the log once: a label in other words beats boxes where characters should be.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from shengtu.logs import get_logger

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
FALLBACK_TEXT = "AI Generated"
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
)
# The smallest text drawn, in pixels: 5 % of a small picture's side is unreadable.
MIN_PIXELS = 12
# A code point no font has a glyph for: what a font draws for a missing character.
_UNASSIGNED = "\U0010fffd"
# FreeType faces are not safe to share between threads; drawing a label's few characters
# under one lock costs far less than a face for each thread.
_drawing = threading.Lock()
log = get_logger("shengtu.labels")


@dataclass(frozen=True)
class Visible:
    text: str = "AI生成"
    position: Corner = "bottom-right"
    size: float = 0.05  # the text's height over the picture's shorter side
    opacity: float = 0.85
    font: str = ""  # a font file; "" : the first of ``fonts`` found
    fonts: tuple[str, ...] = CJK_FONTS


def stamp(img: Image.Image, visible: Visible) -> Image.Image:
    """``img`` with the label drawn on it, in place (and returned)."""
    width, height = img.size
    pixels = min(max(MIN_PIXELS, round(min(width, height) * visible.size)), max(1, height // 2))
    patch, mask = _fitted(*label_patch(visible, pixels), width, height)
    margin = max(2, pixels // 2)
    x = margin if visible.position.endswith("left") else width - patch.width - margin
    y = margin if visible.position.startswith("top") else height - patch.height - margin
    colour = patch if img.mode == "RGBA" else patch.convert(img.mode)
    img.paste(colour, (max(0, x), max(0, y)), mask)
    return img


@functools.lru_cache(maxsize=64)
def label_patch(visible: Visible, pixels: int) -> tuple[Image.Image, Image.Image]:
    """The label's text at ``pixels``, white with a dark outline on a transparent patch
    just its size, and its mask at the label's opacity. Made once per size: rendering the
    glyphs costs more than the rest of a small picture's labelling (results come in a
    handful of sizes). Callers only read them."""
    with _drawing:
        font, text = font_for(visible.text, (visible.font, *visible.fonts), pixels)
        outline = max(1, pixels // 12)
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=outline)
        size = (max(1, round(right - left)), max(1, round(bottom - top)))
        patch = Image.new("RGBA", size, (0, 0, 0, 0))
        ImageDraw.Draw(patch).text(
            (-left, -top),
            text,
            font=font,
            fill=(255, 255, 255, 255),
            stroke_width=outline,
            stroke_fill=(0, 0, 0, 200),
        )
    mask = patch.getchannel("A").point(lambda a: round(a * visible.opacity))
    return patch, mask


def _fitted(
    patch: Image.Image, mask: Image.Image, width: int, height: int
) -> tuple[Image.Image, Image.Image]:
    """The patch and its mask shrunk to fit a picture narrower than the text (a label cut
    off says less)."""
    room = max(1, width - 4), max(1, height - 4)
    if patch.width <= room[0] and patch.height <= room[1]:
        return patch, mask
    scale = min(room[0] / patch.width, room[1] / patch.height)
    size = (max(1, int(patch.width * scale)), max(1, int(patch.height * scale)))
    return patch.resize(size), mask.resize(size)


@functools.lru_cache(maxsize=64)
def font_for(text: str, paths: tuple[str, ...], pixels: int) -> tuple[Font, str]:
    """The first font of ``paths`` that draws ``text`` at ``pixels``, and the text it
    draws; when none does, FALLBACK_TEXT in the first font found (or Pillow's own)."""
    first: Font | None = None
    for path in paths:
        font = _load(path, pixels)
        if font is None:
            continue
        if draws(font, text):
            return font, text
        first = first or font
    fallback = first or ImageFont.load_default(pixels)
    _say_fallback(text)
    return fallback, FALLBACK_TEXT


@functools.cache
def _say_fallback(text: str) -> None:
    log.warning("label_font_missing", text=text, fallback=FALLBACK_TEXT)


def _load(path: str, pixels: int) -> Font | None:
    if not path or not Path(path).is_file():
        return None
    try:
        return ImageFont.truetype(path, pixels)
    except OSError:
        return None


def draws(font: Font, text: str) -> bool:
    """Whether ``font`` has a glyph for every character of ``text`` (a missing one is
    drawn as the font's box, the same as for a code point nobody assigned)."""
    box = bytes(font.getmask(_UNASSIGNED))
    return all(bytes(font.getmask(ch)) != box for ch in set(text) if not ch.isspace())
