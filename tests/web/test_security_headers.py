"""Security headers on every HTML page, on console assets and on files (issue 11's
security review, finding 10)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.support import Platform


def _html_routes(platform: Platform) -> list[str]:
    return ["/console/", "/docs"]


def test_security_headers_on_pages_and_files(platform: Platform) -> None:
    for path in _html_routes(platform):
        r = httpx.get(platform.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy, path
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin", path
        assert "<script>" not in r.text or "sha256-" in policy, path
    console = httpx.get(platform.url + "/console/").text
    assert "#token=" not in console and "<script>" not in console and "style=" not in console
    user = platform.new_user()
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    url = user.client.post(
        "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
    ).json()["data"]["url"]
    r = httpx.get(url)
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/console/console.js", "/console/console.css"])
def test_console_assets_are_served_with_their_types(platform: Platform, path: str) -> None:
    r = httpx.get(platform.url + path)
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(platform.url + "/console/other.js").status_code == 404
