"""Every exchange with an upstream, kept for the operator (issue 23): what
``HttpUpstream._send`` records while a worker's exchange log is set, with keys and
signatures taken out and bodies shortened.

The spec asks that the server log keep the whole submit payload and the API's answer
(日志会记录完整的提交负载和API响应), so that support can answer a user. The log itself
keeps lengths and digests at INFO (a log line is read by more people, kept longer and
shipped further than a task's detail); the whole exchange is kept here instead, by task,
for a set time, and shown only to operators.

A provider knows no database: the worker sets an :class:`ExchangeLog` in a context
variable around each call (:func:`recording`), ``_send`` appends to it, and the worker
writes what it holds after the call. With none set (a channel's check) nothing is
recorded and nothing costs more than a context-variable read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

MASK = "***"
# A key shorter than this is not looked for in the text: it would match at random.
_MIN_SECRET = 6
# A URL is kept to this many characters (a signed URL can be long; its signature is out).
MAX_URL = 2048
# A JSON string of at least this many base64 characters is a picture (or a file): shown as
# its length only.
BASE64_RUN = 256

# Request headers that carry a credential whatever their value: shown as present, masked.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-key", "x-api-key", "x-goog-api-key"}
)
# Names of headers and query parameters that look like a credential or a signature.
# Volcengine's signed requests put the signature in Authorization (or in an ``X-Signature``
# parameter), Azure's signed URLs in ``sig``, S3's in ``X-Amz-Signature``, Gemini's key
# may come as ``?key=``.
_SECRET_NAME = re.compile(
    r"(auth|api[-_]?key|^key$|[-_]key$|token|secret|passw|signature|^sig$|credential|cookie)",
    re.I,
)
# JSON fields, named more narrowly: ``max_tokens`` and ``maxOutputTokens`` are no secret.
_SECRET_FIELD = re.compile(
    r"^(api[-_]?key|key|access[-_]?key|secret([-_]?key)?|(access[-_]?)?token|password"
    r"|signature|sig|authorization|credentials?)$",
    re.I,
)
# Answer headers worth keeping: the body's type and size, waits, and the upstream's own
# request ids (which its support asks for).
_KEPT_ANSWER_HEADERS = frozenset({"content-type", "content-length", "retry-after", "location"})
_KEPT_ANSWER_PATTERN = re.compile(
    r"(request[-_]?id|trace[-_]?id|logid|ratelimit|rate-limit|^x-tt-|^cf-ray$)", re.I
)
_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\\"
_DATA_URL = re.compile(rb"^data:[\w.+-]{1,40}/[\w.+-]{1,60};base64,")
# A run long enough to be a picture, anywhere: most answers (a poll's) have none, and are
# kept as they came without looking at each of their strings.
_LONG_RUN = re.compile(rb"[A-Za-z0-9+/\\]{%d}" % BASE64_RUN)
_TEXT_TYPES = ("json", "text", "xml", "javascript", "x-www-form-urlencoded", "problem")
# Sets of request headers a redactor remembers masked.
_SENT_KEPT = 64


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to an upstream and its answer (or why there was none), as kept."""

    protocol: str
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None
    response_headers: dict[str, str]
    response_body: str | None
    error: str | None
    elapsed_ms: float
    # When the request went out (naive UTC, as every column here).
    at: datetime


@dataclass
class ExchangeLog:
    """Where one provider call's exchanges go; ``body_bytes`` caps each body kept."""

    body_bytes: int
    exchanges: list[Exchange] = field(default_factory=list)


_CURRENT: ContextVar[ExchangeLog | None] = ContextVar("shengtu_exchange_log", default=None)


def current() -> ExchangeLog | None:
    return _CURRENT.get()


@contextmanager
def recording(book: ExchangeLog) -> Iterator[ExchangeLog]:
    """The exchanges of the calls made inside go to ``book``."""
    token = _CURRENT.set(book)
    try:
        yield book
    finally:
        _CURRENT.reset(token)


def secrets_of(key: str) -> tuple[str, ...]:
    """What is taken out of every recorded text for a provider's ``key``: the key, and for
    a key made of parts (``AK:SK`` and the like) each part; longest first, so the whole
    key goes before its parts."""
    parts = {key.strip(), *re.split(r"[\s:|,;]+", key)}
    return tuple(sorted((p for p in parts if len(p) >= _MIN_SECRET), key=len, reverse=True))


@lru_cache(maxsize=1024)
def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """Turns what ``_send`` saw into an :class:`Exchange`: credentials masked, bodies
    shortened and capped."""

    def __init__(self, secrets: Iterable[str], body_bytes: int) -> None:
        self.secrets = tuple(secrets)
        self.body_bytes = body_bytes
        # The headers a key sends are mostly the same request after request (a poll's,
        # every few seconds): masked once each.
        self._sent: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def url(self, url: str, params: Any = None) -> str:
        if "?" not in url:
            if not params:
                return self.text(url)[:MAX_URL]
            if isinstance(params, Mapping):
                # A poll's id: written here, a fifth of what parsing the URL costs.
                query = urlencode(
                    [(k, MASK if secret_name(k) else v) for k, v in params.items()], safe="*"
                )
                return self.text(f"{url}?{query}")[:MAX_URL]
        try:
            parsed = URL(url)
            if params:
                parsed = parsed.extend_query(params)
            if parsed.query:
                parsed = parsed.with_query(
                    [(k, MASK if secret_name(k) else v) for k, v in parsed.query.items()]
                )
            shown = str(parsed)
        except (TypeError, ValueError):
            shown = url
        return self.text(shown)[:MAX_URL]

    def sent_headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        key = tuple(headers)
        kept = self._sent.get(key)
        if kept is None:
            if len(self._sent) >= _SENT_KEPT:
                # Headers signed per request (a date and a signature) never come again.
                self._sent.clear()
            kept = self._sent[key] = self._masked(key)
        return dict(kept)

    def _masked(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            credential = value.lower().startswith(("bearer ", "basic ", "hmac"))
            if credential or lower in _SECRET_HEADERS or secret_name(lower):
                kept[name] = MASK
            else:
                kept[name] = self.text(value)[:512]
        return kept

    def answer_headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        kept: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if secret_name(lower) or lower in ("set-cookie",):
                continue
            if lower in _KEPT_ANSWER_HEADERS or _KEPT_ANSWER_PATTERN.search(lower):
                kept[name] = self.url(value) if lower == "location" else self.text(value)[:512]
        return kept

    def request_body(self, kwargs: Mapping[str, Any]) -> str | None:
        if "json" in kwargs and kwargs["json"] is not None:
            return self.capped(
                json.dumps(_shorten(kwargs["json"]), ensure_ascii=False, default=str)
            )
        data = kwargs.get("data")
        if data is None:
            return None
        if isinstance(data, aiohttp.FormData):
            return self.capped(_form_text(data))
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            return self.capped(_shorten_bytes(raw)) if _is_text(raw) else f"<{len(raw)} 字节>"
        if isinstance(data, str):
            return self.capped(_shorten_bytes(data.encode()))
        if isinstance(data, Mapping):
            return self.capped(json.dumps(_shorten(dict(data)), ensure_ascii=False, default=str))
        return f"<{type(data).__name__}>"

    def response_body(self, raw: bytes, content_type: str, too_long: bool) -> str:
        kind = content_type.split(";", 1)[0].strip().lower()
        if (kind and not any(t in kind for t in _TEXT_TYPES)) or not _is_text(raw):
            return f"<{len(raw)} 字节 {kind or '未知类型'}>"
        text = self.capped(_shorten_bytes(raw))
        if too_long:
            text += f"\n…(回答过长,只读了前 {len(raw)} 字节)"
        return text

    def capped(self, text: str) -> str:
        """``text`` without secrets, cut to ``body_bytes`` of UTF-8 (on a character)."""
        text = self.text(text)
        if len(text) * 4 <= self.body_bytes:
            return text
        data = text.encode("utf-8")
        if len(data) <= self.body_bytes:
            return text
        kept = data[: self.body_bytes].decode("utf-8", errors="ignore")
        return f"{kept}\n…(已截断:共 {len(data)} 字节,只保留前 {self.body_bytes} 字节)"


def _is_text(raw: bytes) -> bool:
    sample = raw[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        return len(raw) > len(sample) and exc.reason == "unexpected end of data"
    return True


def _looks_base64(value: str) -> bool:
    if len(value) < BASE64_RUN or not value.isascii():
        return False
    data = value.encode("ascii")
    prefix = _DATA_URL.match(data)
    body = data[prefix.end() :] if prefix else data
    return len(body) >= BASE64_RUN and not body.translate(None, _BASE64_BYTES + b"\r\n")


def _placeholder(value: str) -> str:
    prefix = ""
    if value.startswith("data:"):
        prefix, _, value = value.partition(",")
        prefix += ","
    return f"{prefix}<base64 {len(value)} 字符>"


def _shorten(value: Any) -> Any:
    """A JSON value with every long base64 string (a picture) replaced by its length and
    every credential-named field masked."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_FIELD.match(k) else _shorten(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_shorten(v) for v in value]
    if isinstance(value, str) and _looks_base64(value):
        return _placeholder(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} 字节>"
    return value


def _shorten_bytes(raw: bytes) -> str:
    """``raw`` (JSON, or any text) as text, each quoted run of base64 of BASE64_RUN
    characters or more (a picture inline, or a data: URL) replaced by its length.

    Quotes are found with ``bytes.find`` and runs checked with ``bytes.translate``, both at
    memory speed: an answer carrying pictures is tens of megabytes, and a regular
    expression over it held the worker's loop for a third of a second."""
    if not _LONG_RUN.search(raw):
        return raw.decode("utf-8", errors="replace")
    out: list[bytes] = []
    pos = 0
    size = len(raw)
    while pos < size:
        start = raw.find(b'"', pos)
        if start < 0:
            break
        end = start + 1
        while True:
            end = raw.find(b'"', end)
            if end < 0:
                break
            # An escaped quote (an odd run of backslashes before it) does not end it.
            slashes = 0
            while raw[end - 1 - slashes] == 0x5C:
                slashes += 1
            if slashes % 2 == 0:
                break
            end += 1
        if end < 0:
            break
        if end - start - 1 >= BASE64_RUN:
            inner = raw[start + 1 : end]
            prefix = _DATA_URL.match(inner)
            body = inner[prefix.end() :] if prefix else inner
            if len(body) >= BASE64_RUN and not body.translate(None, _BASE64_BYTES):
                out.append(raw[pos : start + 1])
                if prefix:
                    out.append(prefix.group(0))
                out.append(f'<base64 {len(body)} 字符>"'.encode())
                pos = end + 1
                continue
        out.append(raw[pos : end + 1])
        pos = end + 1
    out.append(raw[pos:])
    return b"".join(out).decode("utf-8", errors="replace")


def _form_text(form: aiohttp.FormData) -> str:
    """A form's fields as ``name: value`` lines, each file as its size and type."""
    lines: list[str] = []
    # aiohttp keeps the fields as (options, headers, value); read defensively, as its
    # private layout may change.
    for entry in getattr(form, "_fields", ()):
        try:
            options, headers, value = entry
            name = str(options.get("name", "?"))
            if isinstance(value, bytes | bytearray):
                kind = headers.get("Content-Type", "application/octet-stream")
                lines.append(f"{name}: <文件 {len(value)} 字节 {kind}>")
            elif isinstance(value, str):
                lines.append(f"{name}: {_placeholder(value) if _looks_base64(value) else value}")
            else:
                lines.append(f"{name}: <{type(value).__name__}>")
        except (TypeError, ValueError, AttributeError):
            lines.append("<无法读取的表单字段>")
    return "\n".join(lines)
