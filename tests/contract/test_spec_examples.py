"""Every request of the spec, sent as written: only the token and host:port are ours."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spec import SPEC_PATH, Block, blocks, json_examples
from tests.support import Platform, User

CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def spec_blocks() -> list[Block]:
    if not SPEC_PATH.exists():
        if CI:
            pytest.fail(f"spec not found at {SPEC_PATH}")
        pytest.skip(f"spec not found at {SPEC_PATH}")
    return blocks()


@pytest.fixture(scope="module")
def spec_user(platform: Platform) -> User:
    return platform.new_user(points=3000)


def _task_total(user: User) -> int:
    return int(user.client.get("/user/ai/tasks/list?size=1").json()["data"]["total"])


def _wait_all(user: User) -> list[dict[str, object]]:
    records = user.client.get("/user/ai/tasks/list?size=100").json()["data"]["records"]
    return [user.wait(str(r["taskNo"]), timeout=60) for r in records]


def test_curl_examples(spec_blocks: list[Block], spec_user: User, platform: Platform) -> None:
    curls = [b for b in spec_blocks if b.lang == "bash" and "curl" in b.code]
    assert len(curls) >= 10
    before = _task_total(spec_user)
    submitted = 0
    for block in curls:
        script = block.for_server(platform.url).replace("YOUR_JWT_TOKEN", spec_user.token)
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (block.code, result.stderr)
        body = json.loads(result.stdout)
        if "/tasks/submit" in block.code:
            submitted += 1
            assert body["code"] == 200, (block.code, body)
            assert body["data"]["status"] == "created"
        elif "TASK-20251026153045123-4567" in block.code:
            assert body == {
                "code": 404,
                "message": "任务 TASK-20251026153045123-4567 不存在",
                "data": None,
            }
        elif "/tasks/list" in block.code:
            assert body["code"] == 200 and set(body["data"]) == {
                "records",
                "total",
                "size",
                "current",
                "pages",
            }
            assert body["data"]["size"] == 10 and body["data"]["current"] == 1
        elif "/balance" in block.code:
            assert body["code"] == 200 and set(body["data"]) == {"userId", "balance", "expireTime"}
        else:
            pytest.fail(f"an example this test does not know: {block.code[:200]}")
    assert submitted == 5
    assert _task_total(spec_user) == before + 5
    assert {t["status"] for t in _wait_all(spec_user)} == {"completed"}


def test_response_examples_have_our_shape(spec_blocks: list[Block], spec_user: User) -> None:
    detail_example, balance_example = json_examples()
    task_no = spec_user.submit(
        modelName="sc_soraimg_text_1x1",
        prompt="一个可爱的橘猫在窗台上晒太阳,温馨的室内场景,柔和的光线",
    )["data"]["taskNo"]
    done = spec_user.wait(task_no)
    ours = spec_user.client.get(f"/user/ai/tasks/{task_no}").json()
    assert set(ours) == set(detail_example)
    assert set(detail_example["data"]) <= set(ours["data"])  # type: ignore[arg-type]
    for key, value in detail_example["data"].items():  # type: ignore[union-attr]
        if key in (
            "status",
            "taskType",
            "progress",
            "promptSnippet",
            "modelName",
            "imageUrl",
            "errorMessage",
        ):
            assert done[key] == value, key
    balance = spec_user.client.get("/user/points/consumption/balance").json()
    assert set(balance) == set(balance_example)
    assert set(balance["data"]) == set(balance_example["data"])  # type: ignore[arg-type]


def test_python_examples(
    spec_blocks: list[Block], spec_user: User, platform: Platform, tmp_path: Path
) -> None:
    pythons = [b for b in spec_blocks if b.lang == "python"]
    assert len(pythons) == 2
    before = _task_total(spec_user)
    outputs = []
    for i, block in enumerate(pythons):
        script = tmp_path / f"example_{i}.py"
        script.write_text(
            f"YOUR_JWT_TOKEN = {spec_user.token!r}\n" + block.for_server(platform.url)
        )
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "任务编号: TASK-" in outputs[0] and "任务状态: created" in outputs[0]
    assert _task_total(spec_user) == before + 3
    assert {t["status"] for t in _wait_all(spec_user)} == {"completed"}


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        if CI:
            pytest.fail("node is needed to run the spec's JavaScript")
        pytest.skip("node is not installed")
    return path


def _run_js(node: str, code: str, token: str, tmp_path: Path, name: str) -> str:
    script = tmp_path / f"{name}.mjs"
    script.write_text(f"const YOUR_JWT_TOKEN = {json.dumps(token)};\n{code}\n")
    result = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (code[:300], result.stdout, result.stderr)
    return result.stdout


def test_javascript_examples(
    spec_blocks: list[Block], spec_user: User, platform: Platform, node: str, tmp_path: Path
) -> None:
    scripts = [b for b in spec_blocks if b.lang == "javascript"]
    assert len(scripts) == 6
    before = _task_total(spec_user)
    generator_class = next(b for b in scripts if "class SuChuangImageGenerator" in b.code)
    error_handling = next(
        b for b in scripts if "积分不足" in b.code and "generator.generateImage" in b.code
    )
    standalone = [b for b in scripts if b not in (generator_class, error_handling)]
    outputs = [
        _run_js(node, b.for_server(platform.url), spec_user.token, tmp_path, f"js{i}")
        for i, b in enumerate(standalone)
    ]
    text = "\n".join(outputs)
    assert "任务编号: TASK-" in text and "任务状态: created" in text
    assert "任务已提交: TASK-" in text and f"任务完成!结果: {platform.url}/files/results/" in text

    # The client class runs unchanged; the error-handling example uses its `generator`.
    combined = (
        generator_class.for_server(platform.url) + "\n" + error_handling.for_server(platform.url)
    )
    out = _run_js(node, combined, spec_user.token, tmp_path, "generator")
    assert f"图片生成完成: {platform.url}/files/results/" in out, out
    assert f"图片转换完成: {platform.url}/files/results/" in out, out
    assert f"成功: {platform.url}/files/results/" in out, out
    assert _task_total(spec_user) == before + 7  # 4 standalone, 2 by the class, 1 in error handling
    assert {t["status"] for t in _wait_all(spec_user)} == {"completed"}


def test_the_spec_client_sees_积分不足_and_未登录(
    platform: Platform, node: str, spec_blocks: list[Block], tmp_path: Path
) -> None:
    generator_class = next(b for b in spec_blocks if "class SuChuangImageGenerator" in b.code)
    class_only = generator_class.for_server(platform.url).split("// 使用示例")[0]
    poor = platform.new_user(points=10)
    probe = (
        class_only
        + """
const g = new SuChuangImageGenerator(YOUR_JWT_TOKEN, BASE);
try { await g.generateImage("测试prompt", "1:1"); console.log("no error"); }
catch (e) { console.log("ERR " + e.message); }
const anon = new SuChuangImageGenerator("expired-token", BASE);
try { await anon.getBalance(); } catch (e) { console.log("ERR " + e.message); }
""".replace("BASE", json.dumps(platform.url))
    )
    out = _run_js(node, probe, poor.token, tmp_path, "errors")
    assert "ERR 积分不足" in out and "ERR 未登录" in out, out
    assert poor.balance() == 10
    platform.audit()
