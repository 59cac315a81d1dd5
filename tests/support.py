"""Whole-process helpers: a real ``shengtu serve`` on loopback, users, and waiting."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import text

from shengtu.config import Settings
from shengtu.db import Database

TERMINAL = ("completed", "failed")
_names = itertools.count(1)

# The sandbox's text model and what a channel of the sandbox serves it as (30 points).
SANDBOX_MODEL = "sc_soraimg_text_1x1"
SANDBOX_CHANNEL_MODELS = [
    {"modelName": SANDBOX_MODEL, "upstreamModel": "image_gpt", "upstreamParams": {"size": "1:1"}}
]
# The catalog models a channel of the OpenAI Images double serves (add_openai_models):
# text to image, the same answered by URL, and edit.
OPENAI_MODELS = ("gpt-image-1", "gpt-image-1-url", "gpt-image-1-edit")


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real PNG, for uploads."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


_PORTS_GIVEN: set[int] = set()
# The test processes (pytest-xdist's workers) each take ports of their own residue: a port
# one worker was given and has not bound yet is never handed to another.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def free_port() -> int:
    """A port nothing listens on, never one this process gave before: the kernel may hand
    the port just closed out again, and a platform and its sandbox process, both on it,
    made the sandbox answer the platform's /healthz."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        # bind() hands out ports of one parity only (odd, here): share by the rest.
        if (port >> 1) % _WORKERS == _WORKER % _WORKERS and port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def serve_http(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server on loopback (any free port for 0), answering from threads of its own
    until its ``shutdown()``."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Silent(BaseHTTPRequestHandler):
    """Takes the whole request, then closes the connection without a word: sent, maybe
    acted on, its answer lost (a provider's timeout without the wait)."""

    def _drop(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.close_connection = True

    do_GET = do_POST = _drop

    def log_message(self, *args: Any) -> None:
        pass


def ok(answer: httpx.Response) -> Any:
    """The data of an answer, which must be a success (code 200)."""
    body = answer.json()
    assert body["code"] == 200, body
    return body["data"]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """The first true answer of ``check``, asked every 0.1 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


# The sandbox draws its pictures at this fraction of the asked size: a full 1024×1024
# costs it and us ~0.3 s of CPU each, and the suite makes thousands.
SANDBOX_SCALE = 0.125


def drawn(width: int, height: int) -> tuple[int, int]:
    """The size of a sandbox picture asked for at ``width`` × ``height``."""
    return round(width * SANDBOX_SCALE), round(height * SANDBOX_SCALE)


def base_env(data_dir: Path, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHENGTU_")}
    env.update(
        SHENGTU_DATA_DIR=str(data_dir),
        SHENGTU_LOG_FORMAT="json",
        SHENGTU_SANDBOX_LATENCY="0.5",
        SHENGTU_SANDBOX_SCALE=str(SANDBOX_SCALE),
        # argon2 at its cheapest: the suite signs up and logs in thousands of times, and
        # at the default cost each hash is ~0.17 s of CPU here.
        SHENGTU_PASSWORD_HASH_TIME_COST="1",
        SHENGTU_PASSWORD_HASH_MEMORY_KIB="64",
        SHENGTU_POLL_INTERVAL="0.2",
        SHENGTU_FIRST_POLL_DELAY="0.1",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="3",
        SHENGTU_USER_REQUESTS_PER_MINUTE="100000",
        SHENGTU_API_KEY_REQUESTS_PER_MINUTE="100000",
        SHENGTU_MAX_INFLIGHT_TASKS="10",
        # Every test logs in from 127.0.0.1, and schemathesis fails logins by the hundred.
        SHENGTU_LOGIN_IP_FAILURES_PER_WINDOW="100000",
        # Likewise every test signs up and logs in from one address, by the hundred; the
        # tests of these limits set them low again.
        SHENGTU_REGISTER_PER_ADDRESS="100000",
        SHENGTU_REGISTER_TOTAL="100000",
        SHENGTU_LOGIN_SUCCESSES_PER_WINDOW="100000",
        SHENGTU_LOGIN_IP_SUCCESSES_PER_WINDOW="100000",
        # Redemption races fail by the dozen from 127.0.0.1 too.
        SHENGTU_REDEEM_IP_FAILURES_PER_WINDOW="100000",
        SHENGTU_MAX_INFLIGHT_PER_API_KEY="3",
        # Pending payments: first asked about 5 s after the order (time for a test to race
        # its notifies before any question), then every second.
        SHENGTU_PAYMENT_CHECK_SECONDS="0.5",
        SHENGTU_PAYMENT_CHECK_BACKOFF="5,1",
        SHENGTU_JWT_SECRET=secrets.token_urlsafe(32),
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class _Zygote:
    """``tests/zygote.py``, one per test process, started on first use."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.lock = threading.Lock()

    def ask(self, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                self.proc.kill()
                raise AssertionError(f"shengtu {request.get('args')} took over {timeout}s")
            answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
            return answer


_zygote: _Zygote | None = None


def zygote() -> _Zygote:
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = _Zygote()
    return _zygote


def cli(
    env: dict[str, str], *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``shengtu ARGS`` in a process of its own (forked from one that has Shengtu
    imported: see tests/zygote.py)."""
    request = {"op": "run", "args": list(args), "env": env, "cwd": str(cwd) if cwd else None}
    answer = zygote().ask(request, timeout=120)
    result = subprocess.CompletedProcess(
        ["shengtu", *args], answer["code"], answer["stdout"], answer["stderr"]
    )
    if check and result.returncode != 0:
        raise AssertionError(f"shengtu {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


class Forked:
    """What a test needs of ``subprocess.Popen`` for a process the zygote forked."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.owner = zygote()
        self.pid: int = self.owner.ask(
            {"op": "spawn", "args": args, "env": env, "log": str(log_path)}
        )["pid"]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.owner.ask({"op": "poll", "pid": self.pid})["code"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["shengtu"], timeout or 0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Process:
    """A ``shengtu`` process whose output goes to a log file, stopped at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.proc = Forked(args, env, log_path)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def accepted_prompts(sandbox_url: str) -> dict[str, int]:
    """How many times a sandbox accepted each prompt (its ``/stats``)."""
    return dict(httpx.get(sandbox_url + "/stats").json()["accepted"])


def wait_http(url: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{proc.log_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{proc.log_text()[-3000:]}")


@dataclass
class User:
    name: str
    password: str
    token: str
    client: httpx.Client

    def submit(self, **body: Any) -> dict[str, Any]:
        return self.client.post("/user/ai/tasks/submit", json=body).json()  # type: ignore[no-any-return]

    def submit_all(self, cases: dict[str, tuple[str, str, str | None]]) -> dict[str, str]:
        """Submits each case's (model, prompt, reference URL or None): its task number."""
        numbers = {}
        for case, (model, prompt, image) in cases.items():
            body: dict[str, Any] = {"modelName": model, "prompt": prompt}
            if image:
                body["imageUrl"] = image
            answer = self.submit(**body)
            assert answer["code"] == 200, (case, answer)
            numbers[case] = answer["data"]["taskNo"]
        return numbers

    def balance(self) -> int:
        body = self.client.get("/user/points/consumption/balance").json()
        assert body["code"] == 200, body
        return int(body["data"]["balance"])

    def task(self, task_no: str) -> dict[str, Any]:
        body = self.client.get(f"/user/ai/tasks/{task_no}").json()
        assert body["code"] == 200, body
        return body["data"]  # type: ignore[no-any-return]

    def user_id(self) -> int:
        return int(ok(self.client.get("/user/auth/me"))["userId"])

    def redeem(self, code: str, base_url: str = "") -> dict[str, Any]:
        """The answer to redeeming ``code`` (through another API process at ``base_url``)."""
        url = f"{base_url}/user/points/redeem" if base_url else "/user/points/redeem"
        return self.client.post(url, json={"code": code}).json()  # type: ignore[no-any-return]

    def wait(self, task_no: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.task(task_no)
            if data["status"] in TERMINAL:
                return data
            time.sleep(0.1)
        raise AssertionError(f"task {task_no} not terminal after {timeout}s: {data}")


class Platform:
    """A served Shengtu: migrated database, admin user, sandbox upstream."""

    def __init__(
        self, data_dir: Path, *, worker: bool = True, database_url: str = "", **overrides: Any
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if database_url:
            overrides["SHENGTU_DATABASE_URL"] = database_url
        self.env = base_env(
            data_dir, SHENGTU_PORT=self.port, SHENGTU_PUBLIC_BASE_URL=self.url, **overrides
        )
        self.worker = worker
        self.sandbox_url = ""
        self.processes: list[Process] = []
        self.admin: User | None = None
        self.clients: list[httpx.Client] = []

    @classmethod
    def with_sandbox_process(
        cls, data_dir: Path, *, worker: bool = False, **overrides: Any
    ) -> Platform:
        """A platform whose upstream is a sandbox in a process of its own: it outlives the
        workers and API processes a test kills. ``worker``: run the worker inside ``serve``
        (else the caller starts ``shengtu worker`` processes)."""
        port = free_port()
        key = "sbx-" + secrets.token_hex(8)
        platform = cls(
            data_dir,
            worker=worker,
            SHENGTU_SUCHUANG_BASE_URL=f"http://127.0.0.1:{port}",
            SHENGTU_SUCHUANG_API_KEY=key,
            **overrides,
        )
        platform.sandbox_url = f"http://127.0.0.1:{port}"
        sandbox = platform.spawn("sandbox", "--port", str(port), "--key", key)
        wait_http(platform.sandbox_url + "/healthz", sandbox)
        return platform

    def start(self) -> Platform:
        cli(self.env, "migrate")
        admin_password = secrets.token_urlsafe(12)
        cli(self.env, "user", "create", "admin", "--password", admin_password, "--admin")
        self.server = self.spawn("serve", *([] if self.worker else ["--no-worker"]))
        wait_http(self.url + "/healthz", self.server)
        self.admin = self.login("admin", admin_password)
        return self

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sandbox_upstream(self, key: str = "", env: dict[str, str] | None = None) -> tuple[str, str]:
        """Another sandbox upstream, in a process of its own: (base URL, key)."""
        port = free_port()
        key = key or "sbx-" + secrets.token_hex(8)
        proc = self.spawn("sandbox", "--port", str(port), "--key", key, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc)
        return url, key

    def serve_another(self) -> str:
        """Another API process (no worker) on this platform's database: its base URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", self.spawn("serve", "--no-worker", "--port", str(port)))
        return url

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Process:
        name = "-".join(args).replace("/", "_") or "proc"
        proc = Process(
            list(args), env or self.env, self.data_dir / f"{name}-{len(self.processes)}.log"
        )
        self.processes.append(proc)
        return proc

    def settings(self) -> Settings:
        """The platform's settings, for an in-process context on its database."""
        return Settings(
            **{
                k.removeprefix("SHENGTU_").lower(): v
                for k, v in self.env.items()
                if k.startswith("SHENGTU_")
            }
        )

    def execute(self, sql: str, **params: Any) -> None:
        """One SQL statement on the platform's database, in a transaction of its own (a
        test's way to age rows)."""

        async def write() -> None:
            db = Database(self.settings().resolved_database_url)
            try:
                async with db.write() as session:
                    await session.execute(text(sql), params)
            finally:
                await db.dispose()

        asyncio.run(write())

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for proc in reversed(self.processes):
            proc.stop()

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def login(self, name: str, password: str) -> User:
        body = httpx.post(
            self.url + "/user/auth/login", json={"username": name, "password": password}
        ).json()
        assert body["code"] == 200, body
        token = body["data"]["token"]
        return User(name, password, token, self.client(token))

    def new_user(self, points: int = 0) -> User:
        name = f"u{next(_names)}_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        body = httpx.post(
            self.url + "/user/auth/register", json={"username": name, "password": password}
        ).json()
        assert body["code"] == 200, body
        if points:
            self.grant(name, points)
        return self.login(name, password)

    def grant(self, name: str, amount: int) -> None:
        assert self.admin is not None
        body = self.admin.client.post(
            "/admin/points/grant", json={"username": name, "amount": amount}
        ).json()
        assert body["code"] == 200, body

    @property
    def admin_client(self) -> httpx.Client:
        """The operator's client, signed in."""
        assert self.admin is not None
        return self.admin.client

    def audit_entries(self, target: str) -> list[dict[str, Any]]:
        """The admin audit log's newest 100 entries about ``target``, newest first."""
        answer = self.admin_client.get("/admin/audit", params={"target": target, "size": 100})
        return ok(answer)["records"]  # type: ignore[no-any-return]

    def make_codes(self, count: int, points: int) -> list[str]:
        """``count`` new redemption codes worth ``points`` each, made by the operator."""
        made = self.admin_client.post("/admin/codes", json={"count": count, "points": points})
        return list(ok(made)["codes"])

    def add_model(self, name: str, *, task_type: str, cost: int, upstream_model: str) -> None:
        """A catalog model, added by the operator."""
        made = self.admin_client.post(
            "/admin/models",
            json={
                "modelName": name,
                "description": name,
                "pointsCost": cost,
                "taskType": task_type,
                "upstreamModel": upstream_model,
            },
        ).json()
        assert made["code"] == 200, made

    def openai_sandbox(self) -> tuple[str, str]:
        """A sandbox upstream with a key shaped like OpenAI's, and the catalog models of
        OPENAI_MODELS for a channel to it: (base URL, key)."""
        upstream = self.sandbox_upstream("sk-" + secrets.token_hex(12))
        self.add_openai_models()
        return upstream

    def add_openai_models(self) -> None:
        """The catalog models of OPENAI_MODELS: 40, 40 and 45 points."""
        text, url, edit = OPENAI_MODELS
        for name, task_type, cost in (
            (text, "text_to_image", 40),
            (url, "text_to_image", 40),
            (edit, "image_to_image", 45),
        ):
            self.add_model(name, task_type=task_type, cost=cost, upstream_model="gpt-image-1")

    def add_channel(self, *, settle: bool = True, **body: Any) -> dict[str, Any]:
        """A channel, added by the operator (serving SANDBOX_CHANNEL_MODELS unless ``models``
        says otherwise); with ``settle``, once running workers have read it."""
        body.setdefault("models", SANDBOX_CHANNEL_MODELS)
        answer = self.admin_client.post("/admin/channels", json=body).json()
        assert answer["code"] == 200, answer
        if settle:
            time.sleep(1.2)  # workers re-read the channels every second
        return answer["data"]  # type: ignore[no-any-return]

    def audit(self) -> str:
        result = cli(self.env, "audit", check=False)
        assert result.returncode == 0, f"audit failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


class RedisServer:
    """A private redis-server on a free port, which a test may restart at will."""

    def __init__(self, work_dir: Path) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            import pytest

            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed (CI=true)")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.work_dir = work_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class CuttableProxy:
    """A TCP proxy on loopback that a test can cut (every connection dropped, new ones
    refused) and restore: a database that goes away and comes back."""

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(256)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()
