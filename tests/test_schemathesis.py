"""Schemathesis drives the served app from its own OpenAPI document: no 5xx, and no
answer outside the schema (status codes and bodies)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos import report
from tests.support import Platform

LONG = os.environ.get("SHENGTU_CHAOS") == "1"


@pytest.mark.timeout(1800 if LONG else 300)
def test_no_server_error_and_no_answer_outside_the_schema(
    platform: Platform, tmp_path: Path
) -> None:
    user = platform.new_user(points=100_000)
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(binary),
            "run",
            platform.url + "/openapi.json",
            "-H",
            f"Authorization: Bearer {user.token}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            "200" if LONG else "20",
            "--seed",
            "1",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated, result.stdout[-2000:]
    report("schemathesis (OpenAPI fuzzing)", cases=int(generated.group(1)))
    platform.audit()
