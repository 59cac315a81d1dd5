"""Typed dependencies: the app context and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from shengtu.accounts.service import NO_PARAMS, Joined, Principal, check_client
from shengtu.context import AppContext
from shengtu.errors import Forbidden, Unauthorized


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain function dependency in a worker thread, per request.
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` value; None for any other."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def credential_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """A Bearer token from ``Authorization``, else an ``X-API-Key`` (the first of each)."""
    auth = key = None
    for name, value in headers:
        if name == b"authorization" and auth is None:
            auth = value.decode("latin-1")
        elif name == b"x-api-key" and key is None:
            key = value.decode("latin-1")
    return bearer_token(auth or "") or (key or "").strip() or None


NO_CREDENTIAL = "未登录或Token过期:请在 Authorization 头中提供 Bearer Token 或 API Key"


async def authorize(ctx: AppContext, scope: Scope) -> Principal:
    """The caller of a request, within their request-rate limits and their key's allowed
    networks; else 401, 403 or 429."""
    principal, _ = await authorize_with(ctx, scope)
    return principal


async def authorize_with(
    ctx: AppContext,
    scope: Scope,
    joined: Joined | None = None,
    params: Mapping[str, Any] = NO_PARAMS,
) -> tuple[Principal, tuple[Any, ...]]:
    """:func:`authorize`, and the caller's ``joined`` row, read in the same statement."""
    credential = credential_from_headers(scope["headers"])
    if credential is None:
        raise Unauthorized(NO_CREDENTIAL)
    principal, row = await ctx.auth.principal_with(credential, joined, params)
    check_client(principal, lambda: ctx.clients.of(scope))
    await ctx.limits.check(principal)
    return principal, row


async def get_principal(request: Request, ctx: ContextDep) -> Principal:
    return await authorize(ctx, request.scope)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


ADMIN_NEEDS_LOGIN = "管理接口需要使用登录 Token,不能使用 API Key"


async def get_admin(principal: PrincipalDep) -> Principal:
    """An admin signed in with a login token. An API key never acts as the admin, whatever
    its owner's role: a key leaks with the script that holds it, and its own limits (models,
    quota) say nothing of the operator's powers."""
    if not principal.is_admin:
        raise Forbidden("需要管理员权限")
    if principal.api_key_id is not None:
        raise Forbidden(ADMIN_NEEDS_LOGIN)
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
