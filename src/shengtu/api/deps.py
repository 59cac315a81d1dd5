"""Typed dependencies: the app context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shengtu.accounts.service import Principal, principal_from_credential
from shengtu.context import AppContext
from shengtu.errors import Forbidden, Unauthorized


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain function dependency in a worker thread, per request.
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def credential_from_headers(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


async def get_principal(request: Request, ctx: ContextDep) -> Principal:
    credential = credential_from_headers(request)
    if credential is None:
        raise Unauthorized("未登录或Token过期:请在 Authorization 头中提供 Bearer Token 或 API Key")
    principal = await principal_from_credential(
        ctx.db, ctx.settings.resolved_jwt_secret(), credential
    )
    await ctx.limits.check(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: PrincipalDep) -> Principal:
    if not principal.user.is_admin:
        raise Forbidden("需要管理员权限")
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]
