"""A notify as it is kept: every secret masked (signatures, keys, Authorization, cookies),
whatever the protocol names them, and the body cut to a size an operator can read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from shengtu.payments.base import Notify

MASK = "***"
KEPT_BODY_CHARS = 16 * 1024
# Masked in every protocol, beside the provider's own ``redact`` names.
ALWAYS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "x-api-key",
        "sign",
        "signature",
        "key",
        "secret",
        "password",
        "token",
    }
)


def _secret(name: str, names: frozenset[str]) -> bool:
    lowered = name.lower()
    return lowered in names or "signature" in lowered or "secret" in lowered


def headers(given: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {k: MASK if _secret(k, names) else v for k, v in given.items()}


def _pairs(pairs: Iterable[tuple[str, str]], names: frozenset[str]) -> str:
    return urlencode([(k, MASK if _secret(k, names) else v) for k, v in pairs], safe="*")


def _json(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: MASK if isinstance(k, str) and _secret(k, names) else _json(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_json(v, names) for v in value]
    return value


def body(notify: Notify, names: frozenset[str]) -> str:
    """The notify's fields as kept: a GET's query, a form's or JSON's fields with the
    secret ones masked; any other body as text (it carries no field we could tell)."""
    if notify.method == "GET" or not notify.body:
        return _pairs(notify.query.items(), names)[:KEPT_BODY_CHARS]
    text = notify.body.decode("utf-8", errors="replace")
    kind = notify.headers.get("content-type", "")
    if "json" in kind or text.lstrip().startswith(("{", "[")):
        try:
            return json.dumps(_json(json.loads(text), names), ensure_ascii=False)[:KEPT_BODY_CHARS]
        except ValueError:
            pass
    # A form whatever its Content-Type says: 易支付 reads any POST body as one, so a
    # notify sent without the header still carries a signature to mask.
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return text[:KEPT_BODY_CHARS]
    return _pairs(pairs, names)[:KEPT_BODY_CHARS]


def printable(text: str) -> str:
    """NUL spelled out: PostgreSQL's text refuses it, and a kept body must be kept."""
    return text.replace("\x00", "\\x00")


def kept(notify: Notify, provider_names: frozenset[str]) -> tuple[dict[str, str], str]:
    """(headers, body) of ``notify`` as kept."""
    names = ALWAYS | {n.lower() for n in provider_names}
    shown = {printable(k): printable(v) for k, v in headers(notify.headers, names).items()}
    return shown, printable(body(notify, names))
