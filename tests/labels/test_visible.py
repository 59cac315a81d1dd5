"""The visible label: in the corner the setting names, its height the set share of the
shorter side, at the set opacity; the rest of the picture as it was. Without a font for
its characters it says FALLBACK_TEXT instead of drawing boxes."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from shengtu.safety.labels import Label, labelled
from shengtu.safety.visible import FALLBACK_TEXT, Visible, draws, font_for
from tests.labels.reading import labels_of
from tests.labels.test_implicit import PIXELS, TASK_NO, picture

DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
OPPOSITE = dict(zip(CORNERS, reversed(CORNERS), strict=True))


def quarter(img: Image.Image, corner: str) -> tuple[int, int, int, int]:
    w, h = img.size
    x = 0 if corner.endswith("left") else w // 2
    y = 0 if corner.startswith("top") else h // 2
    return x, y, x + w // 2, y + h // 2


def drawn(data: bytes, visible: Visible) -> tuple[Image.Image, Image.Image, bytes]:
    stored, _ = labelled(PIXELS, Label("Shengtu", TASK_NO, visible))(data)
    before = Image.open(io.BytesIO(data)).convert("RGB")
    after = Image.open(io.BytesIO(stored)).convert("RGB")
    return before, after, stored


def mean_difference(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    diff = ImageChops.difference(a.crop(box), b.crop(box))
    return sum(ImageStat.Stat(diff).mean) / 3


@pytest.mark.parametrize("corner", CORNERS)
def test_the_label_is_in_the_corner_set_and_nowhere_else(corner: str) -> None:
    data = picture("PNG", size=(400, 300))
    before, after, stored = drawn(data, Visible(position=corner))
    changed = ImageChops.difference(before, after).getbbox()
    assert changed is not None
    x0, y0, x1, y1 = quarter(before, corner)
    assert x0 <= changed[0] and changed[2] <= x1 and y0 <= changed[1] and changed[3] <= y1
    assert (
        ImageChops.difference(before, after).crop(quarter(before, OPPOSITE[corner])).getbbox()
        is None
    )
    # 5 % of the shorter side (300 px): 15 px of text, its outline a pixel or two more.
    assert 12 <= changed[3] - changed[1] <= 24, changed
    assert labels_of(stored)["text"]["ProduceID"] == TASK_NO  # the implicit one as well


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_a_lossy_picture_is_labelled_in_its_corner_and_barely_changed_elsewhere(fmt: str) -> None:
    data = picture(fmt, size=(400, 300), quality=90)
    before, after, stored = drawn(data, Visible(position="top-left", size=0.1))
    assert mean_difference(before, after, (0, 0, 120, 45)) > 20
    assert mean_difference(before, after, quarter(before, "bottom-right")) < 2
    assert labels_of(stored)["exif"]["ProduceID"] == TASK_NO


def test_the_size_and_opacity_follow_the_settings() -> None:
    data = picture("PNG", size=(600, 400))
    before, big, _ = drawn(data, Visible(size=0.2, opacity=1.0))
    _, faint, _ = drawn(data, Visible(size=0.2, opacity=0.3))
    box = ImageChops.difference(before, big).getbbox()
    assert box is not None and 70 <= box[3] - box[1] <= 110  # 20 % of 400 px
    strong = ImageStat.Stat(ImageChops.difference(before, big).crop(box)).extrema
    weak = ImageStat.Stat(ImageChops.difference(before, faint).crop(box)).extrema
    assert max(hi for _, hi in weak) < max(hi for _, hi in strong)


def test_a_tiny_picture_still_gets_a_whole_readable_label() -> None:
    data = picture("PNG", size=(64, 64))
    before, after, _ = drawn(data, Visible())
    box = ImageChops.difference(before, after).getbbox()
    assert box is not None and box[3] - box[1] >= 10  # MIN_PIXELS, not 5 % of 64


def test_without_a_cjk_font_the_label_says_ai_generated_in_the_font_there_is() -> None:
    cjk = font_for("AI生成", ("", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 20)
    if cjk[1] == "AI生成":
        assert draws(cjk[0], "AI生成")
    # A Latin font only: the fallback text, drawn in it.
    font, text = font_for("AI生成", (DEJAVU,), 20)
    assert text == FALLBACK_TEXT and draws(font, text) and not draws(font, "生成")
    # No font file at all: Pillow's own, the fallback text still drawn.
    font, text = font_for("AI生成", ("/nonexistent/font.ttf",), 20)
    assert text == FALLBACK_TEXT
    data = picture("PNG", size=(400, 300))
    for fonts in ((DEJAVU,), ()):
        before, after, _ = drawn(data, Visible(font="", fonts=fonts))
        box = ImageChops.difference(before, after).getbbox()
        assert box is not None and box[0] >= 200 and box[1] >= 150  # bottom-right
        assert box[2] - box[0] > 60  # "AI Generated", wider than "AI生成" at this size


def test_an_animation_is_labelled_on_every_frame() -> None:
    frames = [Image.new("RGB", (120, 90), colour) for colour in ("navy", "darkgreen")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    stored, info = labelled(PIXELS, Label("Shengtu", TASK_NO, Visible()))(out.getvalue())
    assert info.ext == "gif"
    with Image.open(io.BytesIO(stored)) as img:
        assert img.n_frames == 2
        for index, colour in enumerate(("navy", "darkgreen")):
            img.seek(index)
            frame = img.convert("RGB")
            plain = Image.new("RGB", frame.size, colour)
            # GIF's palette may shift a colour a little: only what changed much counts.
            diff = ImageChops.difference(frame, plain).convert("L").point(lambda v: 255 * (v > 40))
            box = diff.getbbox()
            assert box is not None and box[0] >= 60 and box[1] >= 45, (index, box)
    assert labels_of(stored)["comment"]["ProduceID"] == TASK_NO


def test_drawing_keeps_the_pictures_other_metadata() -> None:
    """Encoded again, the picture keeps its PNG text entries and its JPEG's EXIF (an
    orientation above all), and carries the implicit label once."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_itxt("prompt", "山脉日出")
    _, _, png = drawn(picture("PNG", size=(200, 100), pnginfo=meta), Visible())
    with Image.open(io.BytesIO(png)) as img:
        assert img.text["prompt"] == "山脉日出"  # type: ignore[attr-defined]
    assert png.count(b"<TC260:AIGC>") == 1
    exif = Image.Exif()
    exif[0x0112] = 3
    _, _, jpeg = drawn(picture("JPEG", size=(200, 100), exif=exif.tobytes()), Visible())
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.getexif()[0x0112] == 3
    assert labels_of(jpeg)["exif"]["ProduceID"] == TASK_NO
