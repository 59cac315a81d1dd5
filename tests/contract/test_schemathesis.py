"""Schemathesis drives the served app from its own OpenAPI document: no 5xx, and no
answer outside the schema (status codes and bodies).

uvicorn refuses a request whose bytes it cannot parse ("Invalid HTTP request received":
a 400, then it closes). When the client's bytes were not all read yet, that close is a
reset, and schemathesis, probing after a reset, may take it for an outage ("Server
Unavailable"). Such a refusal is told from an outage by the server itself: it is still
running, still answers, and its log shows the refusal. Anything else fails the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.chaos import report
from tests.databases import ScratchDatabase
from tests.support import Platform, Process

LONG = os.environ.get("SHENGTU_CHAOS") == "1"
REFUSAL = "Invalid HTTP request received"
BINARY = Path(sys.executable).parent / "schemathesis"


def _schemathesis(platform: Platform, token: str, out: Path, examples: int) -> list[str]:
    return [
        str(BINARY),
        "run",
        platform.url + "/openapi.json",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance",
        "--max-examples",
        str(examples),
        "--seed",
        "1",
        "--report",
        "junit",
        "--report-dir",
        str(out),
    ]


def problems_of(report_dir: Path) -> list[str]:
    """Every failure and error in schemathesis's JUnit report, as its text."""
    found = []
    for path in report_dir.glob("junit-*.xml"):
        for node in ET.parse(path).iter():
            if node.tag in ("failure", "error"):
                found.append((node.text or node.get("message") or "").strip())
    return found


def _is_unavailability(problem: str) -> bool:
    return problem.startswith("Server Unavailable") or (
        problem.startswith("Network Error") and "reset" in problem.lower()
    )


def judge(problems: list[str], server: Process, url: str) -> list[str]:
    """The problems that fail the run: all of them, but for resets and 'Server Unavailable'
    while the server is alive, answering, and logged that it refused a request."""
    if server.proc.poll() is not None:
        return problems
    try:
        healthy = httpx.get(url + "/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        healthy = False
    refused = REFUSAL in server.log_text()
    return [p for p in problems if not (healthy and refused and _is_unavailability(p))]


@pytest.mark.timeout(1800 if LONG else 300)
def test_no_server_error_and_no_answer_outside_the_schema(
    platform: Platform, database: ScratchDatabase, tmp_path: Path
) -> None:
    user = platform.new_user(points=100_000)
    examples = 200 if LONG else 12
    # Every route on every database: all phases on SQLite, where the routes' own logic is
    # fuzzed; the boundary values of every field on MariaDB and PostgreSQL, where what
    # differs is how the database takes them (the long run, make chaos, does all of it).
    phases = [] if LONG or database.backend == "sqlite" else ["--phases", "coverage"]
    result = subprocess.run(
        [*_schemathesis(platform, user.token, tmp_path, examples), *phases],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
    )
    problems = problems_of(tmp_path)
    failing = judge(problems, platform.server, platform.url)
    assert not failing, result.stdout[-4000:]
    assert result.returncode == 0 or problems, result.stdout[-4000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated, result.stdout[-2000:]
    report("schemathesis (OpenAPI fuzzing)", cases=int(generated.group(1)))
    platform.audit()


@pytest.mark.timeout(1800 if LONG else 300)
def test_the_admin_routes_hold_up_under_an_admin(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    """The same checks on the ``/admin`` routes, as an admin (on a platform of its own:
    the fuzzing changes prices, users and groups at random). The admin cannot delete,
    disable or demote itself, so the run keeps its rights unless it resets its own
    password (then the rest answers 401, still within the schema)."""
    platform = Platform(tmp_path, database_url=fresh_database.url).start()
    try:
        assert platform.admin is not None
        platform.new_user(points=1000)
        result = subprocess.run(
            [
                *_schemathesis(
                    platform, platform.admin.token, tmp_path / "report", 200 if LONG else 5
                ),
                "--include-path-regex",
                "^/admin",
                # The boundary values of every field (what found the 500s of huge ids);
                # the long run (make chaos) adds random bodies, examples and sequences.
                *([] if LONG else ["--phases", "coverage"]),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "NO_COLOR": "1"},
        )
        problems = problems_of(tmp_path / "report")
        failing = judge(problems, platform.server, platform.url)
        assert not failing, result.stdout[-4000:]
        generated = re.search(r"(\d+) generated", result.stdout)
        assert generated, result.stdout[-2000:]
        report("schemathesis, admin routes as an admin", cases=int(generated.group(1)))
        platform.audit()
    finally:
        platform.stop()


def test_a_real_outage_still_fails_the_run(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data").start()
    try:
        user = platform.new_user()
        run = subprocess.Popen(
            _schemathesis(platform, user.token, tmp_path / "report", 500),
            stdout=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
        # The outage comes once schemathesis is testing, not while it loads the schema
        # (a busy machine can take longer than a fixed wait for that).
        deadline = time.monotonic() + 60
        while platform.server.log_text().count('"event": "request"') < 30:
            assert time.monotonic() < deadline, "schemathesis never started testing"
            time.sleep(0.2)
        assert run.poll() is None, "schemathesis ended before the outage"
        platform.server.kill()
        assert run.wait(120) != 0
        problems = problems_of(tmp_path / "report")
        assert problems and judge(problems, platform.server, platform.url) == problems
    finally:
        platform.stop()


def test_a_refusal_by_a_running_server_is_not_an_outage(platform: Platform) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", platform.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 5
    while REFUSAL not in platform.server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    unavailable = "Server Unavailable\n\nhttp://127.0.0.1 stopped responding."
    refused = "Network Error\n\nConnection failed\n\n    [Errno 111] Connection refused"
    assert judge([unavailable], platform.server, platform.url) == []
    # A refused connection is not a refused request, and other problems always count.
    assert judge([refused], platform.server, platform.url) == [refused]
    assert judge(["Server error"], platform.server, platform.url) == ["Server error"]
