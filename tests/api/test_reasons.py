"""A failed task's reason in English (shengtu/api/reasons.py): every reason the code can
write is found in the source and must come out with none of our Chinese left; an
upstream's own words stay as it wrote them."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

from starlette.types import Message, Receive, Scope, Send

from shengtu.api.i18n import ENGLISH_KEY, EnglishMessages, english, english_reason

SRC = Path(__file__).parents[2] / "src" / "shengtu"
HAN = re.compile(r"[\u4e00-\u9fff]")
# Where reasons are written: every protocol, the worker's steps, the downloads and the
# picture checks whose messages the worker quotes, and the SSRF guard's refusals.
REASON_MODULES = [
    *(p for p in sorted((SRC / "providers").glob("*.py")) if p.name != "exchanges.py"),
    *(SRC / "tasks" / name for name in ("relay.py", "results.py", "deadlines.py", "worker.py")),
    SRC / "storage" / "fetch.py",
    SRC / "storage" / "images.py",
    SRC / "netguard.py",
]
# Chinese in those modules that is no reason: words a provider looks for in an upstream's
# answer, and the notes kept with an exchange for the operator (never a task's reason).
NOT_REASONS = {
    *("风控", "安全", "敏感", "违规", "审核"),  # kling: words of a content refusal
    *("无效", "密钥", "余额不足", "余额已用完", "额度不足"),  # 速创: words of a key refusal
    "请求可能已到达上游",
    "请求未到达上游",
    "请求被中断(任务时限已到或进程停止;{reached})",
    "请求失败({type(exc).__name__};{reached})",
    "<无法记录的请求内容>",
}
# What a quoted value is tried as: a number, nothing, a detail in parentheses, and the
# name of a picture (storage.fetch says what it downloads: "参考图地址").
FILLS = ("7", "", "(7)", "参考图")


def _source_form(node: ast.expr) -> str | None:
    """A string literal as written, an f-string with its values as ``{…}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
            if isinstance(v, ast.Constant | ast.FormattedValue)
        )
    return None


def _filled(node: ast.expr, fill: str) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    assert isinstance(node, ast.JoinedStr)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else fill for v in node.values)


def _written(path: Path) -> list[tuple[str, ast.expr]]:
    """The Chinese literals of a module (docstrings and an f-string's own parts left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(v) for v in node.values)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.expr):
            continue
        text = _source_form(node)
        if text and HAN.search(text) and text not in NOT_REASONS:
            found.append((f"{path.relative_to(SRC)}:{node.lineno}: {text}", node))
    return found


def _task_reasons() -> list[tuple[str, ast.expr]]:
    """What the tasks' own code writes as a task's ``error_message`` (a cancel's reason)."""
    found = []
    for path in sorted((SRC / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "error_message":
                text = _source_form(node.value)
                if text is not None:
                    found.append((f"{path.relative_to(SRC)}: {text}", node.value))
    return found


def test_every_reason_the_code_writes_reads_in_english() -> None:
    written = [w for path in REASON_MODULES for w in _written(path)] + _task_reasons()
    assert len(written) > 200, "the scan found too little: has the code moved?"
    assert any("用户已取消任务" in where for where, _ in written)
    untranslated = []
    for where, node in written:
        tried = [english_reason(_filled(node, fill)) for fill in FILLS]
        if all(HAN.search(text) for text in tried):
            untranslated.append(f"{where}\n    -> {tried[0]}")
    assert not untranslated, "reasons with no English:\n" + "\n".join(untranslated)


def test_a_nested_reason_is_translated_part_by_part() -> None:
    cases = {
        "提交上游失败:上游服务错误(HTTP 500)(已尝试 3 次)": (
            "Sending the task upstream failed: upstream server error (HTTP 500) (tried 3 times)"
        ),
        "任务超时:上游在 8 秒内未完成(最近一次错误:上游限流(HTTP 429):Too many requests)": (
            "Timed out: the upstream did not finish within 8 s "
            "(last error: the upstream is rate-limiting (HTTP 429): Too many requests)"
        ),
        "结果图片转存失败:结果地址不安全: 图片 URL 指向内网或保留地址,已拒绝: http://10.0.0.1/": (
            "Storing the result picture failed: the result's address is unsafe: the URL "
            "points into a private or reserved network and was refused: http://10.0.0.1/"
        ),
        "内容审核未通过:提示词触发了上游的安全策略(blockReason=SAFETY)": (
            "Rejected by content moderation: the prompt triggered the upstream's safety "
            "policy (blockReason=SAFETY)"
        ),
        "用户已取消任务": "Cancelled by the user",
    }
    for chinese, expected in cases.items():
        assert english_reason(chinese) == expected


def test_an_upstreams_own_words_stay_as_it_wrote_them() -> None:
    # Framed in our words where we framed them...
    assert english_reason("图片生成失败:提示词触发了内容安全策略(沙箱模拟)") == (
        "Generation failed: 提示词触发了内容安全策略(沙箱模拟)"
    )
    assert english_reason("上游拒绝任务: Invalid prompt (code: 7)") == (
        "The upstream refused the task: Invalid prompt (code: 7)"
    )
    # ...and, where the whole reason is the upstream's (速创 passes its reason on as it
    # is), said to be a failure, never dropped.
    assert english_reason("内容违规,请修改后重试") == "Generation failed (内容违规,请修改后重试)"


def test_an_error_answer_quoting_a_reason_translates_it_too() -> None:
    # The OpenAI routes' 502 quotes the task's reason.
    message = "生成失败:提交上游失败:上游接口超时(已尝试 3 次)(积分已退还)"
    assert english(message, 502) == (
        "Generation failed: sending the task upstream failed: the upstream did not answer "
        "in time (tried 3 times) (points refunded)"
    )


def test_only_a_client_that_prefers_english_is_marked_so() -> None:
    seen: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(ENGLISH_KEY in scope)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        return None

    middleware = EnglishMessages(app)
    for kind in ("http", "websocket"):
        for language in ("en-US,en;q=0.9", "zh-CN,zh;q=0.9,en;q=0.8", None):
            headers = [(b"accept-language", language.encode())] if language else []
            scope: Scope = {"type": kind, "headers": headers, "path": "/"}
            asyncio.run(middleware(scope, receive, send))
    assert seen == [True, False, False] * 2
