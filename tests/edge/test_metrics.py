"""/metrics: figures from every process of the deployment, summed; open only to its token
or on its own address."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Platform, free_port


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_sum_every_process_and_are_not_open_to_the_world(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    bind_port = free_port()
    platform = Platform.with_sandbox_process(
        tmp_path,
        worker=False,
        SHENGTU_METRICS_TOKEN=token,
        SHENGTU_METRICS_BIND=f"127.0.0.1:{bind_port}",
    )
    platform.start()
    try:
        # The tasks are carried by a worker process of its own: its figures reach the API's
        # /metrics through the shared directory.
        platform.spawn("worker", env={**platform.env, "SHENGTU_METRICS_BIND": ""})
        user = platform.new_user(points=100)
        done = user.submit(modelName="sc_soraimg_text_1x1", prompt="指标")["data"]["taskNo"]
        failed = user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:fail] 指标")
        assert user.wait(done)["status"] == "completed"
        assert user.wait(failed["data"]["taskNo"])["status"] == "failed"
        user.task(done)

        url = platform.url + "/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {user.token}"}).status_code == 401
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        found = samples(answer.text)

        assert (
            value(
                found, "shengtu_tasks_ended_total", model="sc_soraimg_text_1x1", outcome="completed"
            )
            == 1
        )
        assert value(found, "shengtu_tasks_ended_total", outcome="failed") == 1
        assert value(found, "shengtu_task_result_seconds_count", outcome="completed") == 1
        assert value(found, "shengtu_points_total", kind="charged") == 60
        assert value(found, "shengtu_points_total", kind="refunded") == 30
        assert value(found, "shengtu_upstream_attempts_total") >= 2
        assert (
            value(found, "shengtu_http_requests_total", route="/user/ai/tasks/submit", status="200")
            == 2
        )
        # The hot read is counted under its route's template, never its task number.
        assert value(found, "shengtu_http_requests_total", route="/user/ai/tasks/{task_no}") >= 1
        assert not any(done in str(labels) for (_, labels) in found)
        assert value(found, "shengtu_tasks_due") == 0
        assert ("shengtu_worker_lag_seconds", frozenset()) in found
        assert value(found, "shengtu_channel_key_breaker_open") == 0

        # Its own address answers without a token, the same figures.
        own = httpx.get(f"http://127.0.0.1:{bind_port}/metrics")
        assert own.status_code == 200
        assert value(samples(own.text), "shengtu_points_total", kind="charged") == 60
        assert token not in own.text and token not in answer.text

        # Every series the Grafana dashboard in docs/ charts is one /metrics serves.
        dashboard = (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
        charted = set(re.findall(r"shengtu_[a-z_]+", dashboard))
        served = {name for name, _ in found}
        assert charted and charted <= served, charted - served
    finally:
        platform.stop()


def test_metrics_answer_404_until_the_operator_opens_them(platform: Platform) -> None:
    r = httpx.get(platform.url + "/metrics")
    assert r.status_code == 404 and r.json()["code"] == 404
