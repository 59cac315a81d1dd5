# ruff: noqa: E501 - the table reads best one message to a line
"""English messages for ``Accept-Language: en``; Chinese stays the default.

The platform's messages are written once, in Chinese, where they are raised. For a
client that prefers English, the answer's message is matched against this table of the
messages clients meet (sign-in, points, tasks, keys, parameters, idempotency, webhooks,
the OpenAI routes) and the reasons a task fails with (:mod:`shengtu.api.reasons`); one
the tables do not know is answered with the English name of its status and the Chinese
detail, never silently dropped.

Error answers are rewritten here, on their way out. A failed task's reason travels in
answers that succeed (a task read, a list, an event): those are made in English where
they are made, by :func:`english_reason`, for a request :func:`wants_english` says asked
for it. The header is read once, here, for every request.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shengtu.api.reasons import REASONS

# Set in a request's scope (http or websocket) whose client prefers English.
ENGLISH_KEY = "shengtu.english"
# What a reason the tables do not know says, around it (an upstream's own words).
UNKNOWN_REASON = "Generation failed ({0})"
# How many places a text is tried at as "known message + its detail" (_with_detail).
_DETAIL_SPLITS = 12

STATUS_WORDS = {
    400: "Invalid request",
    401: "Not signed in or the token has expired",
    402: "Insufficient points",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Idempotency-Key reused with different parameters",
    429: "Too many requests, please try again later",
    500: "Server error",
    502: "Generation failed",
    503: "Service temporarily unavailable, please try again later",
    504: "Still generating",
}

# (Chinese pattern, English). Patterns match the whole message; groups carry the values.
_TABLE: list[tuple[str, str]] = [
    # A model's parameters (shengtu.pricing.parameters): a field it does not offer, more
    # references than it takes (a value it does not offer: "模型 … 不提供" below).
    (
        r"参数错误:模型 (\S+) 没有参数 (.+),可用参数:无",
        "Invalid parameter: model {0} has no parameter {1}; it takes none",
    ),
    (
        r"参数错误:模型 (\S+) 没有参数 (.+),可用参数:(.*)",
        "Invalid parameter: model {0} has no parameter {1}; its parameters: {2}",
    ),
    (
        r"参数错误:模型 (\S+) 最多接受 (\d+) 张参考图,收到 (\d+) 张",
        "Invalid parameter: model {0} takes at most {1} reference images, got {2}",
    ),
    (
        r"参数错误:参数 (.+) 只能是数字、布尔值或不超过 (\d+) 个字符的字符串",
        "Invalid parameter: {0} must be a number, a boolean or a string of at most {1} characters",
    ),
    # The prompt check (shengtu.safety): a listed word the operator blocks.
    (
        r"提示词含有不允许的内容:(.+),请修改后再试",
        "The prompt contains words that are not allowed: {0}. Please change it and try again",
    ),
    # The moderation service (shengtu.moderation): the prompt refused, or no verdict.
    (
        r"内容审核未通过:提示词含有不允许的内容\((.+)\),请修改后再试",
        "Content moderation refused the prompt ({0}). Please change it and try again",
    ),
    (
        r"内容审核服务暂不可用,请稍后再试\(未扣除积分\)",
        "The content moderation service is unavailable, please try again later (nothing was charged)",
    ),
    (r"参数错误:(.+)", "Invalid parameter: {0}"),
    (r"缺少必填参数 (.+)", "Missing required parameter {0}"),
    # An operator's parameters or price rule that cannot be stored (/admin/models).
    (
        r"可选值的组合过多\((\d+) 种,至多 (\d+) 种\)",
        "too many combinations of values ({0}, at most {1})",
    ),
    (r"未知的可选参数 (\S+),只能是 (.+)", "unknown choice {0}: it must be one of {1}"),
    (r"参数 (\S+) 的默认值 (.*) 不在 values 中", "the default {1} of {0} is not among its values"),
    (
        r"参数 (\S+) 的 values 必须是不重复的非空字符串列表",
        "the values of {0} must be a list of distinct non-empty strings",
    ),
    (
        r"只能有一个参数给出固定价格\(points\),现在有:(.+)",
        "only one parameter may set fixed prices (points); now: {0}",
    ),
    (
        r"价格规则为模型没有的参数 (\S+) 定价",
        "the price rule prices {0}, which the model does not offer",
    ),
    (
        r"价格规则为参数 (\S+) 不提供的取值定价:(.+)",
        "the price rule prices values {0} does not offer: {1}",
    ),
    (r"请求体不是合法的 JSON", "The request body is not valid JSON"),
    (r"请求体必须是 JSON 对象", "The request body must be a JSON object"),
    (r"请求体无法解析", "The request body could not be parsed"),
    (r"参数 (\S+) 必须是字符串", "Parameter {0} must be a string"),
    (r"参数 (\S+) 必须是整数", "Parameter {0} must be an integer"),
    (r"参数 (\S+) 必须是布尔值", "Parameter {0} must be a boolean"),
    (r"参数 (\S+) 不能为空", "Parameter {0} must not be empty"),
    (r"参数 (\S+) 过短", "Parameter {0} is too short"),
    (r"参数 (\S+) 过长\(最多 (\d+) 个字符\)", "Parameter {0} is too long (at most {1} characters)"),
    (r"参数 (\S+) 不能小于 (\S+)", "Parameter {0} must be at least {1}"),
    (r"参数 (\S+) 不能大于 (\S+)", "Parameter {0} must be at most {1}"),
    (r"参数 (\S+) 取值无效,可选值:(.+)", "Parameter {0} is invalid; allowed: {1}"),
    (r"参数 (\S+) 格式错误", "Parameter {0} is malformed"),
    (r"参数 (\S+) 含有非法字符\(NUL\)", "Parameter {0} contains an illegal character (NUL)"),
    (r"prompt 不能为空", "prompt must not be empty"),
    (
        r"prompt 过长\(最多 (\d+) 个字符,收到 (\d+)\)",
        "prompt is too long (at most {0} characters, got {1})",
    ),
    (r"模型 (\S+) 不存在或已停用", "model {0} does not exist or is disabled"),
    (r"模型 (\S+) 不存在", "model {0} does not exist"),
    (
        r"图生图模型 (\S+) 需要至少一张参考图\(imageUrl\)",
        "image-to-image model {0} needs at least one reference image (imageUrl)",
    ),
    (
        r"文生图模型 (\S+) 不接受参考图\(imageUrl\)",
        "text-to-image model {0} takes no reference image (imageUrl)",
    ),
    (r"参考图最多 (\d+) 张,收到 (\d+) 张", "at most {0} reference images, got {1}"),
    (r"参考图最多 (\d+) 张", "at most {0} reference images"),
    (r"size 只能是 (.+)", "size must be one of {0}"),
    (
        r"模型 (\S+) 不提供 (\S+),可选值:auto 或宽高比为 (.+) 的尺寸",
        "model {0} does not offer {1}; offered: auto or a size of aspect ratio {2}",
    ),
    (r"模型 (\S+) 不提供 (\S+),可选值:(.+)", "model {0} does not offer {1}; offered: {2}"),
    (r"模型 (\S+) 不能用于 (\S+)", "model {0} cannot be used with {1}"),
    (r"缺少参考图文件 image", "the reference image file (image) is missing"),
    (r"暂不支持 mask\(局部重绘\)", "mask (inpainting) is not supported"),
    (r"文件超过 (\d+) MB 上限", "the file exceeds the {0} MB limit"),
    (r"上传的文件不是有效图片(.*)", "the uploaded file is not a valid image"),
    (r"回调地址不可用\((.+)\)", "the callback URL cannot be used ({0})"),
    (
        r"使用 callbackUrl 前请先创建回调签名密钥\(POST /user/webhooks/callback-secret\)",
        "create a callback signing secret before using callbackUrl (POST /user/webhooks/callback-secret)",
    ),
    (
        r"图片 URL 指向内网或保留地址,已拒绝: (.+)",
        "the URL points into a private or reserved network and was refused: {0}",
    ),
    (r"图片 URL 只允许端口 (\S+): (.+)", "only ports {0} are allowed: {1}"),
    (
        r"积分不足:需要 (\d+) 积分,当前余额 (\d+) 积分",
        "Insufficient points: {0} needed, balance {1}",
    ),
    (r"积分不足", "Insufficient points"),
    (
        r"未登录或Token过期:请在 Authorization 头中提供 Bearer Token 或 API Key",
        "Not signed in: send a Bearer token or an API key in the Authorization header",
    ),
    (r"未登录或Token过期", "Not signed in or the token has expired"),
    (r"用户名或密码错误", "Wrong user name or password"),
    (r"用户名 (\S+) 已被占用", "The user name {0} is taken"),
    (r"需要管理员权限", "Administrator rights are required"),
    (
        r"不能重置自己的密码:请在账号设置中用原密码修改",
        "You cannot reset your own password: change it with the old one in your account settings",
    ),
    (r"参数错误:时间 (\S+) 超出可用范围", "Invalid parameter: the time {0} is out of range"),
    (r"无权访问", "Forbidden"),
    (r"该 API Key 不允许使用模型 (\S+)", "This API key may not use model {0}"),
    (r"该 API Key 不允许从地址 (\S+) 使用", "This API key may not be used from {0}"),
    (r"(.+)需要使用登录 Token,不能使用 API Key", "This needs a sign-in token, not an API key"),
    (r"任务 (\S+) 不存在", "Task {0} does not exist"),
    (
        r"任务 (\S+) 已结束\((\w+)\),无法取消",
        "Task {0} has already ended ({1}) and cannot be cancelled",
    ),
    (
        r"任务 (\S+) 正在提交给上游,请稍后刷新后再试",
        "Task {0} is being sent upstream; refresh and try again shortly",
    ),
    (
        r"任务 (\S+) 已被上游接受并开始生成.*",
        "Task {0} was accepted upstream and is being generated: it cannot be cancelled; if it fails, its points come back",
    ),
    (
        r"(当前用户|该 API Key)进行中的任务已达上限 (\d+) 个,请等待任务完成后再提交",
        "Too many tasks in progress (limit {1}); wait for some to finish",
    ),
    (r"请求过于频繁,请稍后再试", "Too many requests, please try again later"),
    (
        r"Idempotency-Key (\S+) 已用于另一个参数不同的请求;新请求请换一个新的 Key",
        "Idempotency-Key {0} was used for a request with different parameters; use a new key for a new request",
    ),
    (
        r"使用 Idempotency-Key (\S+) 的上一个请求仍在处理中,请稍后重试",
        "The earlier request with Idempotency-Key {0} is still being processed; retry shortly",
    ),
    (
        r"Idempotency-Key 须为 1 到 (\d+) 个可打印 ASCII 字符",
        "Idempotency-Key must be 1 to {0} printable ASCII characters",
    ),
    (r"Webhook 端点 (\d+) 不存在", "Webhook endpoint {0} does not exist"),
    (r"Webhook 端点 (\d+) 已停用,请先启用", "Webhook endpoint {0} is disabled; enable it first"),
    (r"Webhook 消息 (\S+) 不存在", "Webhook message {0} does not exist"),
    (
        r"Webhook 消息 (\S+) 正在等待首次投递",
        "Webhook message {0} is waiting for its first delivery",
    ),
    (r"每个用户最多 (\d+) 个 Webhook 端点", "At most {0} webhook endpoints per user"),
    (r"生成失败:(.+)\(积分已退还\)", "Generation failed: {0} (points refunded)"),
    (
        r"等待 (\S+) 秒后图片仍在生成中,任务号:(.+?);.*",
        "Still generating after {0} s, tasks: {1}; fetch them later with GET /user/ai/tasks/{{taskNo}}, or retry with the same Idempotency-Key (no second charge)",
    ),
    (r"任务 (\S+) 的图片已过期删除", "The picture of task {0} has expired and was deleted"),
    (r"图片已超过保存期限,已被删除", "The picture passed its retention period and was deleted"),
    (r"文件不存在", "File not found"),
    (r"接口不存在", "No such route"),
    (r"资源不存在", "Not found"),
    (r"请求方法不被允许", "Method not allowed"),
    (r"请求体过大", "Request body too large"),
    (
        r"数据库暂时不可用,请稍后再试",
        "The database is temporarily unavailable, please try again later",
    ),
    (r"服务暂时不可用,请稍后再试", "Service temporarily unavailable, please try again later"),
    (r"服务器错误", "Server error"),
    (
        r"需要 SHENGTU_METRICS_TOKEN 作为 Bearer Token",
        "SHENGTU_METRICS_TOKEN is required as a Bearer token",
    ),
]
_COMPILED = [
    (re.compile(pattern + r"\Z", re.DOTALL), english) for pattern, english in (*_TABLE, *REASONS)
]


def english(message: str, status: int) -> str:
    """``message`` in English, translating what it quotes of other messages too."""
    known = _translated_text(message)
    return known if known is not None else f"{STATUS_WORDS.get(status, 'Error')} ({message})"


@functools.lru_cache(maxsize=4096)
def english_reason(message: str) -> str:
    """A failed task's reason in English: our words translated, an upstream's quoted as it
    wrote them. Reasons repeat (every task a fault fails the same way): cached."""
    known = _translated_text(message)
    text = known if known is not None else UNKNOWN_REASON.format(message)
    return text[:1].upper() + text[1:]


def wants_english(scope: Scope) -> bool:
    """Whether this request's client prefers English (:class:`EnglishMessages` says so)."""
    return ENGLISH_KEY in scope


def _english(request: Request) -> bool:
    return wants_english(request.scope)


# A route's parameter: whether its caller prefers English.
EnglishDep = Annotated[bool, Depends(_english)]


@functools.lru_cache(maxsize=8192)
def _translated_text(text: str) -> str | None:
    """A known message in English (its quoted parts too, when known); None otherwise.
    Cached: a reason's parts are tried again as the heads of longer ones."""
    for pattern, template in _COMPILED:
        m = pattern.match(text)
        if m:
            return template.format(*(_translated_text(g) or g for g in m.groups()))
    return _with_detail(text)


def _with_detail(text: str) -> str | None:
    """A known message with a detail after it, as providers append an upstream's code or
    words (``…(code)``, ``…:words``): the message in English, the detail as it is, or in
    English where it is known. The first split whose head is known wins; only the first
    few are tried (our heads are short; an upstream's words may hold hundreds of marks)."""
    closed = text.endswith(")")
    tries = _DETAIL_SPLITS
    for at in range(1, len(text)):
        mark = text[at]
        if not (mark == ":" or (mark == "(" and closed)):
            continue
        tries -= 1
        if tries < 0:
            return None
        head = _translated_text(text[:at])
        if head is None:
            continue
        detail = text[at + 1 : -1] if mark == "(" else text[at + 1 :]
        detail = _translated_text(detail) or detail
        return f"{head} ({detail})" if mark == "(" else f"{head}: {detail}"
    return None


def prefers_english(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether Accept-Language ranks English above Chinese (and anything else)."""
    for name, value in headers:
        if name == b"accept-language":
            return _first_language(value.decode("latin-1")).startswith("en")
    return False


def _first_language(header: str) -> str:
    best, best_q = "", -1.0
    for item in header.split(","):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if tag and q > best_q:
            best, best_q = tag.lower(), q
    return best


class EnglishMessages:
    """Rewrites the message of an error answer (envelope or OpenAI's shape) for a client
    that prefers English. Answers below 400 and every other client pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not prefers_english(scope["headers"]):
            await self.app(scope, receive, send)
            return
        # For what answers below: a failed task's reason in a task read, a list, an event.
        scope[ENGLISH_KEY] = True
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def translating_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _translated_body(b"".join(chunks), start["status"])
            headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, translating_send)


def _translated_body(body: bytes, status: int) -> bytes:
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if isinstance(answer, dict):
        inner = answer.get("error")
        target: dict[str, Any] = inner if isinstance(inner, dict) else answer
        if isinstance(target.get("message"), str):
            target["message"] = english(target["message"], status)
            return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
    return body
