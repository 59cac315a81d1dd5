"""HTML pages and the headers every one of them sends.

A strict Content-Security-Policy: script only from our origin (or, for the API docs, its
one inline script by hash and the CDN its assets come from), no framing, no plugins, and
user text is never markup (the consoles insert it as text). Pages are also ``nosniff``,
``same-origin`` referrers, and never cached in a shared proxy.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def csp(*, script: str = "'self'", style: str = "'self'", img: str = "'self' data: blob:") -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {script}",
            f"style-src {style}",
            # Results may live in an S3 bucket on another origin.
            f"img-src {img} http: https:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


PAGE_CSP = csp()
PAGE_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def page(path: Path) -> FileResponse:
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def static(path: Path) -> FileResponse:
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=COMMON_HEADERS)


def _inline_script_hashes(html: str) -> str:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )


def swagger_page(openapi_url: str, title: str) -> Response:
    """FastAPI's Swagger UI page, with its inline script allowed by its hash only."""
    html = bytes(get_swagger_ui_html(openapi_url=openapi_url, title=title).body).decode()
    cdn = "https://cdn.jsdelivr.net"
    policy = csp(
        script=f"'self' {cdn} {_inline_script_hashes(html)}",
        style=f"'self' {cdn}",
        img="'self' data: https://fastapi.tiangolo.com",
    )
    return HTMLResponse(html, headers={**COMMON_HEADERS, "Content-Security-Policy": policy})
