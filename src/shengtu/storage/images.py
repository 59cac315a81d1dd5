"""What a file really is: sniffed with Pillow, never trusted from a header or a name.

The size is read from the header before a single pixel is decoded, and a picture over the
pixel cap is refused there: a 243 KB PNG can declare 8000 × 7999 pixels, 256 MB decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
}
DEFAULT_MAX_PIXELS = 4096 * 4096


class NotAnImage(ValueError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    ext: str
    content_type: str
    width: int
    height: int


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """The picture, opened (header only), of an accepted format and within ``max_pixels``."""
    if not data:
        raise NotAnImage("文件为空")
    try:
        img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage("图片像素过多,疑似解压炸弹") from exc
    except Exception as exc:
        raise NotAnImage("内容不是有效的图片") from exc
    fmt = img.format or ""
    width, height = img.size
    if fmt not in FORMATS:
        img.close()
        raise NotAnImage(f"不支持的图片格式 {fmt or '未知'}")
    if width * height > max_pixels:
        img.close()
        raise NotAnImage(f"图片尺寸过大({width}×{height},最多 {max_pixels:,} 像素)")
    return img


def decoded(data: bytes, max_pixels: int) -> Image.Image:
    """The picture, whole: a truncated or corrupt file raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open_checked(data, max_pixels) as img:
                img.verify()
            # verify() does not decode pixels; a load() finds truncated data.
            img = _open_checked(data, max_pixels)
            img.load()
            return img
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage("图片像素过多,疑似解压炸弹") from exc
    except Exception as exc:
        raise NotAnImage("内容不是有效的图片") from exc


def sniff_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check that ``data`` is a whole picture of an accepted format and sane size."""
    with decoded(data, max_pixels) as img:
        ext, content_type = FORMATS[img.format or ""]
        return ImageInfo(ext, content_type, img.width, img.height)


def checked(max_pixels: int) -> Callable[[bytes], tuple[bytes, ImageInfo]]:
    """A check that keeps the picture as it came (an upstream's result): sniffed whole."""

    def check(data: bytes) -> tuple[bytes, ImageInfo]:
        return data, sniff_image(data, max_pixels)

    return check


def reencoded(max_pixels: int) -> Callable[[bytes], tuple[bytes, ImageInfo]]:
    """A check that keeps only what the picture shows (an upload): drawn anew."""

    def check(data: bytes) -> tuple[bytes, ImageInfo]:
        return reencode_upload(data, max_pixels)

    return check


def reencode_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, ImageInfo]:
    """An uploaded picture drawn anew: what it shows (turned upright as its EXIF says),
    and none of what it carries (EXIF with the camera's GPS position, comments, ICC
    tricks, trailing bytes). Animated GIFs keep their first frame, as PNG."""
    with decoded(data, max_pixels) as img:
        fmt = img.format or ""
        upright = ImageOps.exif_transpose(img)
        out = io.BytesIO()
        if fmt == "JPEG":
            upright.convert("RGB").save(out, "JPEG", quality=92)
        elif fmt == "WEBP":
            upright.save(out, "WEBP", quality=92)
        else:
            fmt = "PNG"
            if upright.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                upright = upright.convert("RGBA")
            upright.save(out, "PNG")
        ext, content_type = FORMATS[fmt]
        return out.getvalue(), ImageInfo(ext, content_type, upright.width, upright.height)
