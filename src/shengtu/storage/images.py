"""What a file really is: sniffed with Pillow, never trusted from a header or a name."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
MAX_PIXELS = 64_000_000


class NotAnImage(ValueError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    ext: str
    content_type: str
    width: int
    height: int


def sniff_image(data: bytes) -> ImageInfo:
    """Check that ``data`` is a whole picture of an accepted format and sane size."""
    if not data:
        raise NotAnImage("文件为空")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in FORMATS:
                    raise NotAnImage(f"不支持的图片格式 {fmt or '未知'}")
                if width * height > MAX_PIXELS:
                    raise NotAnImage(f"图片尺寸过大({width}×{height})")
                img.verify()
            # verify() does not decode pixels; a load() finds truncated data.
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage("图片像素过多,疑似解压炸弹") from exc
    except Exception as exc:
        raise NotAnImage("内容不是有效的图片") from exc
    ext, content_type = FORMATS[fmt]
    return ImageInfo(ext, content_type, width, height)
