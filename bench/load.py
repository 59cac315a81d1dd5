"""Load from a separate process (wrk), and what the server spent meanwhile (CPU, RSS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


class ProcessMeter:
    """CPU (in cores) and peak RSS of some processes over a stretch of time."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, sum(rss_mb(p) for p in self.pids))
            self._stop.wait(0.2)

    def __enter__(self) -> ProcessMeter:
        self._cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self._t0
        self.cores = (sum(cpu_seconds(p) for p in self.pids) - self._cpu0) / self.seconds


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    socket_errors: int
    cpu_cores: float = 0.0
    rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def errors(self, allowed: tuple[int, ...] = (200,)) -> int:
        unexpected = sum(n for s, n in self.statuses.items() if s not in allowed)
        return unexpected + self.socket_errors


def request_line(method: str, path: str, headers: dict[str, str], body: str = "") -> str:
    head = "|".join(f"{k}: {v}" for k, v in headers.items())
    return "\t".join((method, path, head, body))


def wrk(
    url: str, lines: list[str], seconds: float, server_pids: tuple[int, ...], connections: int = 64
) -> LoadResult:
    """``connections`` kept-alive connections for ``seconds``, one wrk thread (the other core
    of a 2-core machine is the server's); the requests in ``lines`` taken in turn."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
        command += ["-s", str(WRK_SCRIPT), url.rstrip("/") + "/", "--", f.name]
        with ProcessMeter(*server_pids) as meter:
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        Path(f.name).unlink()
    raw = json.loads(out.split("WRK-JSON", 1)[1])
    return LoadResult(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        statuses={int(k): v for k, v in raw["statuses"].items()},
        socket_errors=raw["socket_errors"] + raw["timeouts"],
        cpu_cores=meter.cores,
        rss_mb=meter.peak_rss,
    )


def wrk_version() -> str:
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0].split(" [")[0]
