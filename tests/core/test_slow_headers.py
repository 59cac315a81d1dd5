"""A client that never finishes its headers is cut off (issue 11's security review,
finding 13)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.support import Platform


def test_a_client_that_never_finishes_its_headers_is_cut_off(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_HEADER_TIMEOUT="1").start()
    try:
        with socket.create_connection(("127.0.0.1", platform.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server, with nothing said
            assert time.monotonic() - started < 3
        assert httpx.get(platform.url + "/healthz").status_code == 200
    finally:
        platform.stop()
