"""The implicit label written into each format a result comes in, read back by Pillow (and
by exiftool where the machine has it): the AIGC field with the task number in XMP and in
the format's own place, the picture itself untouched, the file's other metadata kept."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageChops

from shengtu.safety.labels import Label, labelled
from shengtu.storage.images import sniff_image
from shengtu.storage.metadata import Metadata, embed
from tests.labels.reading import EXIFTOOL, SOURCE_TYPE, exiftool_labels, labels_of

TASK_NO = "TASK-20250901120000123-0042"
PIXELS = 4096 * 4096
# Where Pillow finds the AIGC JSON besides the XMP packet, per format (GIF: Pillow reads
# no XMP there, exiftool does).
PLACES = {
    "png": {"xmp", "text"},
    "jpg": {"xmp", "exif"},
    "webp": {"xmp", "exif"},
    "gif": {"comment"},
}


def picture(
    fmt: str, mode: str = "RGB", size: tuple[int, int] = (96, 64), **options: object
) -> bytes:
    gradient = Image.linear_gradient("L").resize(size)
    img = Image.merge("RGB", (gradient, gradient.rotate(90).resize(size), gradient)).convert(mode)
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def label_it(data: bytes, producer: str = "Shengtu") -> bytes:
    stored, _ = labelled(PIXELS, Label(producer, TASK_NO))(data)
    return stored


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGBA")


CASES = {
    "png": picture("PNG"),
    "png-palette": picture("PNG", "P"),
    "png-alpha": picture("PNG", "RGBA"),
    "jpg": picture("JPEG", quality=90),
    "webp-lossy": picture("WEBP", quality=80),
    "webp-lossless-alpha": picture("WEBP", "RGBA", lossless=True),
    "webp-extended": picture("WEBP", exif=Image.Exif().tobytes(), quality=80),
    "gif87a": b"GIF87a" + picture("GIF")[6:],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_format_carries_the_aigc_label_and_its_pixels_are_untouched(case: str) -> None:
    data = CASES[case]
    stored = label_it(data)
    info = sniff_image(stored)  # still a whole picture of the same kind and size
    assert info == sniff_image(data)
    found = labels_of(stored)
    expected = {
        "Label": "1",
        "ContentProducer": "Shengtu",
        "ProduceID": TASK_NO,
        "ReservedCode1": "",
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }
    assert PLACES[info.ext] <= set(found), found
    for place in PLACES[info.ext]:
        assert found[place] == expected, (place, found[place])
    if info.ext != "gif":
        assert found["source"] == SOURCE_TYPE
    # A metadata insertion, not a re-encoding: every pixel as it was.
    assert ImageChops.difference(pixels(stored), pixels(data)).getbbox() is None
    if EXIFTOOL:
        tags = exiftool_labels(stored, info.ext)
        aigc = [json.loads(v) for k, v in tags.items() if k.lower().endswith(":aigc")]
        # XMP everywhere, and the PNG's own text entry too.
        assert len(aigc) == (2 if info.ext == "png" else 1), tags
        assert all(a == expected for a in aigc), tags
        if info.ext != "gif":
            assert SOURCE_TYPE in tags.values(), tags


def test_a_label_written_twice_is_there_once_with_the_second_number() -> None:
    """A picture an upstream (or an earlier pass) labelled: its XMP and AIGC entry are
    replaced, never doubled (readers take the first packet they find)."""
    first = label_it(CASES["png"])
    again, _ = labelled(PIXELS, Label("Shengtu", "TASK-20250901120000123-0043"))(first)
    with Image.open(io.BytesIO(again)) as img:
        chunks = [k for k, _ in img.text.items()]
    assert chunks.count("AIGC") == 1 and chunks.count("XML:com.adobe.xmp") == 1
    assert again.count(b"<TC260:AIGC>") == 1
    assert labels_of(again)["text"]["ProduceID"] == "TASK-20250901120000123-0043"
    jpeg = label_it(label_it(CASES["jpg"]))
    assert jpeg.count(b"http://ns.adobe.com/xap/1.0/\x00") == 1
    assert jpeg.count(b"Exif\x00\x00") == 1


def test_a_jpeg_keeps_its_exif_orientation_and_the_png_its_text() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: a label must not turn the picture
    exif[0x010F] = "Upstream"
    jpeg = label_it(picture("JPEG", exif=exif.tobytes()))
    with Image.open(io.BytesIO(jpeg)) as img:
        kept = img.getexif()
        assert kept[0x0112] == 6 and kept[0x010F] == "Upstream"
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("job", "image_abc")
    png = label_it(picture("PNG", pnginfo=meta))
    with Image.open(io.BytesIO(png)) as img:
        assert img.text["job"] == "image_abc"


def test_a_provider_name_in_chinese_and_markup_reads_back_as_written() -> None:
    name = "生图 <AI> & 服务商"
    for case in ("png", "jpg", "webp-lossy"):
        found = labels_of(label_it(CASES[case], name))
        assert {v["ContentProducer"] for k, v in found.items() if k != "source"} == {name}


def test_a_broken_file_is_refused_not_mangled() -> None:
    with pytest.raises(ValueError):
        embed(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "PNG", Metadata(xmp=b"<x/>"), (1, 1))
    with pytest.raises(ValueError):
        embed(b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG", Metadata(xmp=b"<x/>"), (1, 1))
