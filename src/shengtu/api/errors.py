"""Maps every failure to the envelope, with the HTTP status equal to ``code``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shengtu.errors import ShengtuError
from shengtu.logs import get_logger

log = get_logger("shengtu.api")

_HTTP_MESSAGES = {
    400: "参数错误:请求体无法解析",
    401: "未登录或Token过期",
    403: "无权访问",
    404: "接口不存在",
    405: "请求方法不被允许",
    413: "请求体过大",
    415: "不支持的内容类型",
    429: "请求过于频繁,请稍后再试",
    500: "服务器错误",
    503: "服务暂时不可用,请稍后再试",
}


def error_response(
    code: int, message: str, headers: dict[str, str] | None = None, data: Any = None
) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "data": data}, status_code=code, headers=headers
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "请求体"


def describe_validation_error(err: dict[str, Any]) -> str:
    """One Chinese sentence for one pydantic error."""
    field = _field_name(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"缺少必填参数 {field}"
    if kind == "json_invalid":
        return "请求体不是合法的 JSON"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return "请求体必须是 JSON 对象"
    if kind == "string_type":
        return f"参数 {field} 必须是字符串"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"参数 {field} 必须是整数"
    if kind == "bool_parsing":
        return f"参数 {field} 必须是布尔值"
    if kind == "string_too_short":
        return f"参数 {field} 不能为空" if ctx.get("min_length") == 1 else f"参数 {field} 过短"
    if kind == "string_too_long":
        return f"参数 {field} 过长(最多 {ctx.get('max_length')} 个字符)"
    if kind in ("greater_than_equal", "greater_than"):
        return f"参数 {field} 不能小于 {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"参数 {field} 不能大于 {ctx.get('le', ctx.get('lt'))}"
    if kind == "literal_error":
        return f"参数 {field} 取值无效,可选值:{ctx.get('expected')}"
    if kind == "value_error":
        return str(ctx.get("error") or err.get("msg") or f"参数 {field} 无效")
    return f"参数 {field} 格式错误"


def _refused_value(exc: DBAPIError) -> bool:
    """A data exception: SQLSTATE class 22, however the driver's error is wrapped."""
    if isinstance(exc, DataError):
        return True
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(state, str) and state.startswith("22"):
            return True
    return False


Failure = tuple[int, str, dict[str, str] | None]


def describe_failure(exc: Exception) -> Failure:
    """The status, message and headers for a failure raised while serving a request."""
    if isinstance(exc, ShengtuError):
        return exc.code, exc.message, exc.headers
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        log.error("database_unavailable", error=str(getattr(exc, "orig", exc))[:300])
        return 503, "数据库暂时不可用,请稍后再试", None
    if isinstance(exc, OSError):
        # A driver that raises the socket's own error (asyncpg on connect, Redis …).
        log.error("backend_unreachable", error_type=type(exc).__name__, error=str(exc)[:300])
        return 503, "服务暂时不可用,请稍后再试", None
    if isinstance(exc, DBAPIError):
        if _refused_value(exc):
            # A value the database refuses for what it is (a NUL byte for PostgreSQL,
            # say): the client's input; the transaction was rolled back.
            log.warning("database_refused_value", error=str(exc.orig)[:300])
            return 400, "参数错误:参数中含有无法保存的字符或取值", None
        log.error("database_error", error=str(exc.orig)[:300])
        return 500, "服务器错误", None
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return 500, "服务器错误", None


def failure_data(exc: Exception) -> Any:
    """What a failure tells a program beside its message (a refused parameter and the
    values offered, say); None for most."""
    return exc.data if isinstance(exc, ShengtuError) else None


def failure_response(exc: Exception) -> JSONResponse:
    """The envelope for a failure raised while serving a request (not a validation error)."""
    code, message, headers = describe_failure(exc)
    return error_response(code, message, headers=headers, data=failure_data(exc))


class ErrorShape(Protocol):
    """A failure in another shape than the envelope, for the routes under a prefix (the
    OpenAI-compatible ones answer in OpenAI's: ``openai_compat/errors.py``)."""

    def __call__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse: ...


def install_error_handlers(app: FastAPI, shapes: Sequence[tuple[str, ErrorShape]] = ()) -> None:
    """Every failure answered in the envelope, or in the shape of the first of ``shapes``
    (path prefix, shape) whose prefix the request's path starts with."""

    def _answer(
        request: Request,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
        param: str | None = None,
        data: Any = None,
    ) -> JSONResponse:
        path = request.url.path
        for prefix, shape in shapes:
            if path.startswith(prefix):
                return shape(code, message, param=param, headers=headers)
        return error_response(code, message, headers=headers, data=data)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = describe_validation_error(dict(errors[0])) if errors else "参数错误"
        param = _field_name(tuple(errors[0].get("loc", ()))) if errors else None
        return _answer(request, 400, f"参数错误:{message}", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = exc.status_code
        if code == 422:
            code = 400
        message = _HTTP_MESSAGES.get(code, "请求失败")
        return _answer(request, code, message, getattr(exc, "headers", None))

    async def _failure(request: Request, exc: Exception) -> JSONResponse:
        return _answer(request, *describe_failure(exc), data=failure_data(exc))

    # By class, not only ``Exception``: Starlette answers a handler for ``Exception`` from
    # ServerErrorMiddleware, which then raises the exception on to the server (a traceback
    # in the log for every expected 503); by class, ExceptionMiddleware answers, and that ends it.
    for kind in (ShengtuError, OperationalError, InterfaceError, PoolTimeout, OSError, DBAPIError):
        app.add_exception_handler(kind, _failure)
    app.add_exception_handler(Exception, _failure)
