"""Metadata written into a picture's file without decoding a pixel: an XMP packet, named
text entries and an EXIF comment, each where its format keeps them and standard tools
(Pillow, exiftool, viewers) look.

A result is stored as the upstream made it; re-encoding it to add a few hundred bytes of
metadata would cost a decode and an encode (tens of milliseconds for a 1024 × 1024 PNG)
and, for JPEG and lossy WebP, a generation of quality. So the bytes are spliced: chunks
(PNG, WebP), segments (JPEG) or extension blocks (GIF) added beside the picture data,
which is copied as it was. An XMP packet or entry of the same name already in the file is
replaced (readers take the first packet they find, so two would hide ours); everything
else the file carries is kept.

The input is a picture Pillow has already read whole (``storage.images``): its structure
is sound, and a malformed one raises ``ValueError`` here all the same.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
_JPEG_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXIF_PREFIX = b"Exif\x00\x00"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# The Exif UserComment starts with its character code: 8 bytes, ASCII here (the text is
# made ASCII by the caller: JSON with \\u escapes).
_ASCII_CODE = b"ASCII\x00\x00\x00"
# WebP's extended header (VP8X) flags.
_VP8X_ALPHA, _VP8X_EXIF, _VP8X_XMP = 0x10, 0x08, 0x04
# GIF: the application extension XMP is kept in, and the "magic trailer" that lets a GIF
# reader that knows nothing of XMP skip the packet as if it were data sub-blocks.
_GIF_XMP_APP = b"\x21\xff\x0bXMP DataXMP"
_GIF_XMP_TRAILER = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"


@dataclass(frozen=True)
class Metadata:
    """What to write: an XMP packet (UTF-8), text entries by name (PNG iTXt; a GIF comment),
    and an ASCII comment for EXIF's UserComment (JPEG, WebP)."""

    xmp: bytes
    texts: dict[str, str] = field(default_factory=dict)
    comment: str = ""


def embed(data: bytes, fmt: str, meta: Metadata, size: tuple[int, int]) -> bytes:
    """``data``, a whole picture of Pillow's format ``fmt`` and ``size`` pixels, with
    ``meta`` written in (the picture data untouched)."""
    if fmt == "PNG":
        return _png(data, meta)
    if fmt == "JPEG":
        return _jpeg(data, meta)
    if fmt == "WEBP":
        return _webp(data, meta, size)
    if fmt == "GIF":
        return _gif(data, meta)
    raise ValueError(f"no metadata written into {fmt}")


# PNG: chunks of length, type, data and CRC. Ours go right after IHDR, before the image data
# (where XMP must be for readers that stop at IDAT).


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _itxt(keyword: bytes, text: str) -> bytes:
    # keyword, NUL, not compressed (0, 0), no language tag, no translated keyword, UTF-8 text.
    return _png_chunk(b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + text.encode())


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(type, first bytes of its data, the whole chunk) of each chunk after the signature."""
    at = len(_PNG_SIGNATURE)
    while at < len(data):
        if at + 12 > len(data):
            raise ValueError("PNG chunk cut short")
        (length,) = struct.unpack(">I", data[at : at + 4])
        end = at + 12 + length
        if end > len(data):
            raise ValueError("PNG chunk cut short")
        yield data[at + 4 : at + 8], data[at + 8 : at + 8 + 80], data[at:end]
        at = end


def _png(data: bytes, meta: Metadata) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    ours = {_PNG_XMP_KEYWORD} | {name.encode() for name in meta.texts}
    added = _itxt(_PNG_XMP_KEYWORD, meta.xmp.decode()) + b"".join(
        _itxt(name.encode(), text) for name, text in meta.texts.items()
    )
    out = [_PNG_SIGNATURE]
    for kind, head, chunk in _png_chunks(data):
        if kind in (b"tEXt", b"iTXt", b"zTXt") and head.split(b"\x00", 1)[0] in ours:
            continue  # replaced by ours
        out.append(chunk)
        if kind == b"IHDR":
            out.append(added)
    return b"".join(out)


# JPEG: marker segments up to the start of scan, then the entropy-coded data, copied as is.
# Ours (EXIF, then XMP, both APP1) go after the JFIF header (APP0) when there is one.


def _jpeg_segments(data: bytes) -> tuple[list[bytes], bytes]:
    """The segments between SOI and SOS (each whole, marker included), and the rest."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    segments: list[bytes] = []
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is picture data
            return segments, data[at:]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        segments.append(data[at : at + 2 + length])
        at += 2 + length
    raise ValueError("JPEG without a scan")


def _app1(body: bytes) -> bytes:
    if len(body) + 2 > 0xFFFF:
        raise ValueError("APP1 segment too large")
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def exif_with_comment(exif: bytes, comment: str) -> bytes:
    """``exif`` (``Exif\\0\\0`` and a TIFF structure, or empty) with its UserComment set to
    ``comment``; every other tag kept (an orientation, above all)."""
    parsed = Image.Exif()
    if exif:
        parsed.load(exif)
    parsed.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _ASCII_CODE + comment.encode("ascii")
    return parsed.tobytes()


def _jpeg(data: bytes, meta: Metadata) -> bytes:
    segments, rest = _jpeg_segments(data)
    exif = b""
    kept: list[bytes] = []
    for segment in segments:
        if segment[1] == 0xE1 and segment[4:].startswith(_JPEG_EXIF_PREFIX):
            exif = exif or segment[4:]  # merged into ours
        elif segment[1] == 0xE1 and segment[4:].startswith(_JPEG_XMP_PREFIX):
            continue  # replaced by ours
        else:
            kept.append(segment)
    ours = [_app1(exif_with_comment(exif, meta.comment)), _app1(_JPEG_XMP_PREFIX + meta.xmp)]
    lead = 1 if kept and kept[0][1] == 0xE0 else 0  # JFIF's APP0 stays first
    return b"\xff\xd8" + b"".join(kept[:lead] + ours + kept[lead:]) + rest


# WebP: a RIFF file of chunks. EXIF and XMP need the extended header (VP8X) with their
# flags set; a simple file (one VP8 or VP8L chunk) gets one, with its canvas size and alpha.


def _riff_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP")
    chunks: list[tuple[bytes, bytes]] = []
    at = 12
    while at + 8 <= len(data):
        fourcc = data[at : at + 4]
        (length,) = struct.unpack("<I", data[at + 4 : at + 8])
        if at + 8 + length > len(data):
            raise ValueError("WebP chunk cut short")
        chunks.append((fourcc, data[at + 8 : at + 8 + length]))
        at += 8 + length + length % 2
    return chunks


def _has_alpha(chunks: list[tuple[bytes, bytes]]) -> bool:
    for fourcc, body in chunks:
        if fourcc == b"ALPH":
            return True
        # VP8L: signature 0x2f, then 14 + 14 bits of size and the alpha_is_used bit.
        if fourcc == b"VP8L" and len(body) >= 5:
            return bool(body[4] & 0x10)
    return False


def _webp(data: bytes, meta: Metadata, size: tuple[int, int]) -> bytes:
    chunks = [(k, b) for k, b in _webp_chunks(data) if k not in (b"EXIF", b"XMP ")]
    old_exif = next((b for k, b in _webp_chunks(data) if k == b"EXIF"), b"")
    if chunks and chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= _VP8X_EXIF | _VP8X_XMP
        chunks[0] = (b"VP8X", bytes(header))
    else:
        width, height = size
        flags = _VP8X_EXIF | _VP8X_XMP | (_VP8X_ALPHA if _has_alpha(chunks) else 0)
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + canvas))
    # A WebP's EXIF chunk holds the TIFF structure without JPEG's "Exif\0\0" prefix.
    old = _JPEG_EXIF_PREFIX + old_exif.removeprefix(_JPEG_EXIF_PREFIX) if old_exif else b""
    exif = exif_with_comment(old, meta.comment).removeprefix(_JPEG_EXIF_PREFIX)
    chunks += [(b"EXIF", exif), (b"XMP ", meta.xmp)]
    body = b"WEBP" + b"".join(_riff_chunk(k, b) for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


# GIF: blocks after the header, the screen descriptor and its colour table. Ours (a comment
# and the XMP application extension) go first among them.


def _gif_comment(text: bytes) -> bytes:
    pieces = (text[at : at + 255] for at in range(0, len(text), 255))
    blocks = b"".join(bytes([len(piece)]) + piece for piece in pieces)
    return b"\x21\xfe" + blocks + b"\x00"


def _gif(data: bytes, meta: Metadata) -> bytes:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        raise ValueError("not a GIF")
    packed = data[10]
    table = 3 * (2 << (packed & 0x07)) if packed & 0x80 else 0
    at = 13 + table
    comment = "\n".join(meta.texts.values()).encode()
    added = (_gif_comment(comment) if comment else b"") + _GIF_XMP_APP + meta.xmp + _GIF_XMP_TRAILER
    # Extensions are GIF89a's: an 87a file becomes 89a, which every reader reads.
    return b"GIF89a" + data[6:at] + added + data[at:]


def webp_lossless(data: bytes) -> bool:
    """Whether a WebP file's picture is lossless (VP8L), so a re-encoding can stay so."""
    return any(fourcc == b"VP8L" for fourcc, _ in _webp_chunks(data))
