"""The authenticated caller, as typed dependencies: a principal within its limits, or an
admin signed in with a login token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from shengtu.api.credentials import credential_from_headers
from shengtu.auth.authenticator import NO_PARAMS, Joined
from shengtu.auth.principal import Principal, check_client
from shengtu.context import AppContext, ContextDep
from shengtu.errors import Forbidden, Unauthorized

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
