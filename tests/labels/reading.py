"""How a test reads a picture's labels back, the way standard tools do: Pillow (the PNG
text entry, EXIF's UserComment, a GIF comment, the XMP packet) and exiftool when the
machine has it (``make browser`` installs it where it can)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

EXIFTOOL = shutil.which("exiftool")
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_XMP_AIGC = re.compile(r"<TC260:AIGC>(.*?)</TC260:AIGC>", re.S)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def xmp_of(img: Image.Image) -> str:
    raw = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def labels_of(data: bytes) -> dict[str, Any]:
    """Each place Pillow finds the AIGC label in: {place: the parsed JSON}, and the XMP's
    digital source type under "source"."""
    found: dict[str, Any] = {}
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        xmp = xmp_of(img)
        if match := _XMP_AIGC.search(xmp):
            found["xmp"] = json.loads(unescape(match.group(1)))
        if "trainedAlgorithmicMedia" in xmp:
            found["source"] = re.search(r"http://cv\.iptc\.org/[^<\"]+", xmp).group(0)  # type: ignore[union-attr]
        if "AIGC" in img.info:
            found["text"] = json.loads(img.info["AIGC"])
        if "comment" in img.info:
            found["comment"] = json.loads(img.info["comment"])
        comment = img.getexif().get_ifd(0x8769).get(0x9286)
        if comment:
            assert comment.startswith(b"ASCII\x00\x00\x00"), comment[:8]
            found["exif"] = json.loads(comment[8:])
    return found


def exiftool_labels(data: bytes, suffix: str) -> dict[str, Any]:
    """What exiftool reads of the label: {tag: value} of its AIGC, UserComment and
    DigitalSourceType tags."""
    assert EXIFTOOL is not None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"picture.{suffix}"
        path.write_bytes(data)
        out = subprocess.run(
            [EXIFTOOL, "-j", "-G1", "-a", "-u", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    tags = json.loads(out)[0]
    return {
        k: v
        for k, v in tags.items()
        # exiftool names the XMP field "Aigc" and the PNG entry "AIGC".
        if k.split(":")[-1].lower() in ("aigc", "usercomment", "digitalsourcetype", "comment")
    }
