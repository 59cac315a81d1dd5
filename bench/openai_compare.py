"""``POST /v1/images/generations`` through Shengtu and through the LiteLLM proxy, against
the same mock OpenAI upstream (``bench/mock_openai.py``, which answers at once), with the
same wrk settings, in the same run.

LiteLLM runs from the bench's own environment (``.bench-venv``, made on first use with
``pip install 'litellm[proxy]'``), as its documentation starts it: a config file, a master
key, no database. Shengtu runs as ``make run`` does (embedded: SQLite, the worker inside),
its catalog model served by an ``openai_images`` channel to the mock; each request is
charged, recorded as a task, its picture stored, and answered with our URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.support import Platform, User, cli, free_port

from bench.load import LoadResult, request_line, wrk
from bench.report import CAMPAIGN, Report, server_pid

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench-venv"
# 1.108: the last whose [proxy] extra needs nothing outside PyPI (1.110 asks for litellm-proxy).
LITELLM_VERSION = "1.108.0"
MASTER_KEY = "sk-bench-master-key"
PROMPT = "一只在雪地里奔跑的柴犬"


def litellm_binary() -> Path:
    """The ``litellm`` command of the bench's own environment, installed on first use."""
    binary = VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                f"litellm[proxy]=={LITELLM_VERSION}",
            ],
            check=True,
        )
    return binary


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _tree(pid: int) -> tuple[int, ...]:
    """A process and its children (LiteLLM's server may run in a child)."""
    pids = [pid]
    for p in pids:
        children = Path(f"/proc/{p}/task/{p}/children")
        if children.exists():
            pids += [int(c) for c in children.read_text().split()]
    return tuple(pids)


def per_core(result: LoadResult) -> float:
    return result.rps / result.cpu_cores if result.cpu_cores else 0.0


def openai_comparison(report: Report, seconds: float, warmup: float, work: Path) -> None:
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    mock = _spawn(
        [sys.executable, "-m", "bench.mock_openai", "--port", str(mock_port)], work / "mock.log"
    )
    try:
        _wait(mock_url + "/v1/models", mock, work / "mock.log")
        body = {"model": "gpt-image-1", "prompt": PROMPT, "size": "1024x1024"}
        shengtu = _through_shengtu(mock_url, body, seconds, warmup, work)
        litellm = _through_litellm(mock_url, body, seconds, warmup, work)
    finally:
        _stop(mock)
    ratio = per_core(shengtu[0]) / per_core(litellm) if per_core(litellm) else 0.0
    met = ratio >= 2.0 and shengtu[0].p99_ms < litellm.p99_ms and shengtu[1]
    target = "Shengtu ≥ 2 × LiteLLM's req/s per core, lower p99"
    report.load("POST /v1/images/generations via LiteLLM proxy (relay only)", litellm)
    report.load(
        "POST /v1/images/generations via Shengtu (charged, recorded, stored)",
        shengtu[0],
        target,
        met,
    )
    report.row(
        "/v1/images/generations: req/s per core, Shengtu vs LiteLLM",
        f"{per_core(shengtu[0]):,.0f} vs {per_core(litellm):,.0f} ({ratio:.2f}×);"
        f" p99 {shengtu[0].p99_ms:.0f} vs {litellm.p99_ms:.0f} ms; {shengtu[2]}",
        target,
        met,
    )


def _through_shengtu(
    mock_url: str, body: dict[str, str], seconds: float, warmup: float, work: Path
) -> tuple[LoadResult, bool, str]:

    (work / "openai").mkdir()
    p = Platform(work / "openai", worker=True, **CAMPAIGN)
    p.start()
    try:
        cli(
            p.env,
            "channel",
            "add",
            "--name",
            "mock-openai",
            "--protocol",
            "openai_images",
            "--base-url",
            mock_url,
            "--key",
            "sk-mock-upstream-key",
            "--key-rps",
            "100000",
            "--model",
            'sc_soraimg_text_1x1=gpt-image-1:{"response_format": "b64_json"}',
        )
        user = p.new_user()
        p.grant(user.name, 100_000_000)
        key = user.client.post("/user/api-keys", json={"name": "bench"}).json()["data"]["key"]
        line = request_line(
            "POST",
            "/v1/images/generations",
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            json.dumps(body, ensure_ascii=False),
        )
        pid = (server_pid(p),)
        wrk(p.url, [line], warmup, pid)
        before = user.balance(), _count(user)
        result = wrk(p.url, [line], seconds, pid)
        time.sleep(1)
        spent, made = before[0] - user.balance(), _count(user) - before[1]
        completed = user.client.get(
            "/user/ai/tasks/list", params={"status": "completed", "size": 1}
        ).json()["data"]["total"]
        answered = result.statuses.get(200, 0)
        exact = spent == 30 * made and made >= answered and completed >= answered
        files = sum(1 for f in (work / "openai" / "files").rglob("*.png"))
        note = f"{answered} answered, {made} tasks charged {spent} points, {files} pictures stored"
        return result, exact and files >= answered and result.errors() == 0, note
    finally:
        p.stop()


def _count(user: User) -> int:
    return int(user.client.get("/user/ai/tasks/list", params={"size": 1}).json()["data"]["total"])


def _through_litellm(
    mock_url: str, body: dict[str, str], seconds: float, warmup: float, work: Path
) -> LoadResult:
    config = work / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "gpt-image-1",
                        "litellm_params": {
                            "model": "openai/gpt-image-1",
                            "api_base": mock_url + "/v1",
                            "api_key": "sk-mock-upstream-key",
                        },
                    }
                ],
                "general_settings": {"master_key": MASTER_KEY},
                "litellm_settings": {"drop_params": True, "set_verbose": False},
            }
        )
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM"))}
    env["LITELLM_LOG"] = "ERROR"
    proc = _spawn(
        [
            str(litellm_binary()),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        work / "litellm.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/health/liveliness", proc, work / "litellm.log")
        line = request_line(
            "POST",
            "/v1/images/generations",
            {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
            json.dumps(body, ensure_ascii=False),
        )
        pids = _tree(proc.pid)
        wrk(url, [line], warmup, pids)
        return wrk(url, [line], seconds, pids)
    finally:
        _stop(proc)
