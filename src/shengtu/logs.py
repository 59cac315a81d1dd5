"""Structured logs: JSON in production, readable in a terminal, UTF-8 unescaped.

Every line carries the request id and task number bound in context vars.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    # The SDK logs through this module too, and imports no server settings.
    from shengtu.config import Settings

_SECRET_KEYS = re.compile(r"(authorization|password|secret|token|api[_-]?key|^key$)", re.I)
_REDACTED = "***"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking field replaced."""
    if isinstance(value, dict):
        return {
            k: (_REDACTED if isinstance(k, str) and _SECRET_KEYS.search(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def digest(value: Any) -> dict[str, Any]:
    """What INFO logs of a prompt or an upstream body: its length and a short hash, enough
    to match two lines up, not to read what a user wrote (that is DEBUG's)."""
    text = value if isinstance(value, str) else _dumps(value, sort_keys=True)
    data = text.encode("utf-8", errors="replace")
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    return {
        k: (_REDACTED if _SECRET_KEYS.search(k) and k != "event" else redact(v))
        for k, v in event_dict.items()
    }


def _dumps(obj: Any, **kw: Any) -> str:
    kw.setdefault("default", str)
    return json.dumps(obj, ensure_ascii=False, **kw)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: Settings) -> None:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    # Libraries log through the standard library (uvicorn's "Invalid HTTP request
    # received", alembic): their lines are rendered like ours, not as bare text.
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
