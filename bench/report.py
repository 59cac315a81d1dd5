"""What the benchmarks share: a campaign's operator settings, the report they fill in
(``bench/RESULTS.md``), and the served platform's process."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support import Platform

from bench.load import LoadResult

# Operator settings for a campaign: rate limits and in-flight limits high enough that the
# benchmark measures the work, not the refusals (the in-flight count still runs on submit).
CAMPAIGN = {
    "SHENGTU_USER_REQUESTS_PER_MINUTE": "100000000",
    "SHENGTU_API_KEY_REQUESTS_PER_MINUTE": "100000000",
    "SHENGTU_MAX_INFLIGHT_TASKS": "100000000",
    "SHENGTU_MAX_INFLIGHT_PER_API_KEY": "100000000",
    "SHENGTU_UPSTREAM_RPS": "100000",
    "SHENGTU_TASK_DEADLINE": "7200",
    "SHENGTU_LOG_LEVEL": "WARNING",
    # Full-size sandbox pictures, as a real upstream's (the tests draw them small).
    "SHENGTU_SANDBOX_SCALE": "1",
}


@dataclass
class Row:
    name: str
    value: str
    target: str = ""
    met: bool | None = None


class Report:
    def __init__(self) -> None:
        self.http: list[tuple[str, LoadResult, str, bool | None]] = []
        self.rows: list[Row] = []
        self.baseline_rps = 0.0

    def load(
        self, name: str, result: LoadResult, target: str = "", met: bool | None = None
    ) -> None:
        self.http.append((name, result, target, met))
        print(f"  {name}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms", flush=True)

    def row(self, name: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(name, value, target, met))
        print(f"  {name}: {value}", flush=True)

    def render(self) -> str:
        def verdict(met: bool | None) -> str:
            return "" if met is None else ("met" if met else "MISSED")

        out = [
            "| HTTP, 64 connections | req/s | × baseline | p50 ms | p99 ms | max ms | errors"
            " | server CPU | server RSS | target | |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
        ]
        for name, r, target, met in self.http:
            ratio = r.rps / self.baseline_rps if self.baseline_rps else 0.0
            codes = ", ".join(f"{n} × {s}" for s, n in sorted(r.statuses.items()))
            errors = f"{r.socket_errors} socket; {codes}"
            out.append(
                f"| {name} | {r.rps:,.0f} | {ratio:.2f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} |"
                f" {r.max_ms:.1f} | {errors} | {r.cpu_cores:.2f} | {r.rss_mb:.0f} MB |"
                f" {target} | {verdict(met)} |"
            )
        out += ["", "| measure | result | target | |", "|---|---|---|---|"]
        for row in self.rows:
            out.append(f"| {row.name} | {row.value} | {row.target} | {verdict(row.met)} |")
        return "\n".join(out)


def server_pid(p: Platform) -> int:
    return p.server.proc.pid
