from __future__ import annotations

import asyncio
import ipaddress

import pytest

from shengtu.netguard import UnsafeURL, check_public_url, is_public_ip
from tests.chaos import report

REFUSED = [
    "http://127.0.0.1/a.png",
    "http://127.1/a.png",
    "http://2130706433/a.png",
    "http://0x7f000001/a.png",
    "http://017700000001/a.png",
    "http://0x7f.0.0.1/a.png",
    "http://0/a.png",
    "http://0.0.0.0/a.png",
    "http://localhost/a.png",
    "http://localhost./a.png",
    "http://LOCALHOST:8081/a.png",
    "http://foo.localhost/a.png",
    "http://printer.local/a.png",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/a.png",
    "http://172.16.5.4/a.png",
    "http://172.31.255.255/a.png",
    "http://192.168.1.1/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/a.png",
    "http://224.0.0.1/a.png",
    "http://240.0.0.1/a.png",
    "http://255.255.255.255/a.png",
    "http://[::1]/a.png",
    "http://[::]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://[::ffff:7f00:1]/a.png",
    "http://[fe80::1]/a.png",
    "http://[fc00::1]/a.png",
    "http://[fd12:3456::1]/a.png",
    "http://[2002:7f00:1::]/a.png",
    "http://[ff02::1]/a.png",
    "http://user:pass@example.com/a.png",
    "http://example.com@127.0.0.1/a.png",
    "http://127.0.0.1#@example.com/a.png",
    "file:///etc/passwd",
    "gopher://example.com/",
    "ftp://example.com/a.png",
    "javascript:alert(1)",
    "http:///a.png",
    "http://exa mple.com/a.png",
    "http://198.18.0.1/a.png",
    "http://192.0.2.1/a.png",
]

ACCEPTED = [
    "https://example.com/photo.jpg",
    "http://example.com/ref1.jpg",
    "https://oss-1818ai-user-img.oss-cn-hangzhou.aliyuncs.com/user123/photo.jpg",
    "https://8.8.8.8/a.png",
    "https://[2001:4860:4860::8888]/a.png",
]


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        asyncio.run(check_public_url(url))


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted(url: str) -> None:
    asyncio.run(check_public_url(url))


def test_a_fetch_needs_a_resolvable_name() -> None:
    with pytest.raises(UnsafeURL, match="无法解析"):
        asyncio.run(check_public_url("https://no-such-host.invalid/a.png", require_resolved=True))


def test_corpus_is_large_enough() -> None:
    assert len(REFUSED) >= 40
    report(
        "SSRF corpus (each URL asserted)", cases=len(REFUSED) + len(ACCEPTED), faults=len(REFUSED)
    )


def test_embedded_ipv4_is_judged_too() -> None:
    assert not is_public_ip(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert is_public_ip(ipaddress.ip_address("::ffff:8.8.8.8"))
    assert len(REFUSED) >= 40
