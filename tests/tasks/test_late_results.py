"""Late results (issue 12): an upstream job that finishes after its task failed at the
deadline is still asked about, slowly; its picture is kept as lateResultUrl while the task
stays failed and refunded. A setting turns this off."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
from PIL import Image

from tests.support import SANDBOX_MODEL, Platform, drawn

MODEL = SANDBOX_MODEL


def _run(tmp_path: Path, late: bool) -> tuple[Platform, dict[str, object], dict[str, object]]:
    platform = Platform(
        tmp_path,
        SHENGTU_TASK_DEADLINE="2",
        SHENGTU_LATE_POLL_SECONDS="0.5",
        SHENGTU_LATE_RESULTS="true" if late else "false",
    ).start()
    assert platform.admin is not None
    # An upstream that takes 4 s for a picture: longer than the tasks' deadline.
    url, key = platform.sandbox_upstream(env={**platform.env, "SHENGTU_SANDBOX_LATENCY": "4"})
    made = platform.add_channel(name="慢渠道", baseUrl=url, addKeys=[key])
    user = platform.new_user(points=30)
    task_no = user.submit(modelName=MODEL, prompt="来得太晚")["data"]["taskNo"]
    failed = user.wait(task_no)
    assert failed["status"] == "failed" and "任务超时" in failed["errorMessage"], failed
    assert failed["lateResultUrl"] is None
    assert user.balance() == 30  # refunded at the deadline
    # The picture is done 4 s after the submit; asked about every 0.5 s.
    deadline = time.monotonic() + (12 if late else 6)
    task = failed
    while time.monotonic() < deadline and task["lateResultUrl"] is None:
        time.sleep(0.3)
        task = user.task(task_no)
    if late:
        assert task["lateResultUrl"] is not None, task
    else:
        assert task["lateResultUrl"] is None, task
    assert task["status"] == "failed" and user.balance() == 30
    channel = platform.admin.client.get(f"/admin/channels/{made['id']}").json()["data"]
    return platform, task, channel


def test_a_late_picture_is_kept_on_the_failed_refunded_task(tmp_path: Path) -> None:
    platform, task, channel = _run(tmp_path, late=True)
    try:
        picture = httpx.get(str(task["lateResultUrl"]))
        assert picture.status_code == 200
        assert Image.open(io.BytesIO(picture.content)).size == drawn(1024, 1024)
        assert task["resultUrl"] is None
        assert channel["lateCount"] == 1
        platform.audit()
    finally:
        platform.stop()


def test_late_results_can_be_turned_off(tmp_path: Path) -> None:
    platform, _, channel = _run(tmp_path, late=False)
    try:
        assert channel["lateCount"] == 0
        platform.audit()
    finally:
        platform.stop()
