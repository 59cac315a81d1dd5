from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from shengtu.accounts import service
from shengtu.accounts.models import ApiKey, User
from shengtu.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Credentials,
    LoginOut,
    PasswordChange,
    UserOut,
)
from shengtu.api.deps import ContextDep, PrincipalDep
from shengtu.api.envelope import Envelope, ok
from shengtu.errors import Forbidden, Unauthorized
from shengtu.timefmt import fmt

router = APIRouter(tags=["accounts"])


def _user_out(user: User) -> UserOut:
    return UserOut(userId=user.id, username=user.username, role=user.role)


def _key_out(key: ApiKey, tz: str) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        createTime=fmt(key.created_at, tz) or "",
        lastUsedTime=fmt(key.last_used_at, tz),
    )


@router.post("/user/auth/register", response_model=Envelope[UserOut])
async def register(body: Credentials, ctx: ContextDep) -> Envelope[UserOut]:
    if not ctx.settings.allow_register:
        raise Forbidden("本站未开放注册,请联系管理员")
    user = await service.create_user(
        ctx.db, body.username, body.password, points_amount=ctx.settings.register_points
    )
    return ok(_user_out(user))


@router.post("/user/auth/login", response_model=Envelope[LoginOut])
async def login(body: Credentials, request: Request, ctx: ContextDep) -> Envelope[LoginOut]:
    client = request.client.host if request.client else "unknown"
    name = body.username.strip()
    await ctx.limits.login_allowed(name, client)
    try:
        user = await service.authenticate(ctx.db, body.username, body.password)
    except Unauthorized:
        await ctx.limits.login_failed(name, client)
        raise
    token, expires_in = service.issue_token(ctx.settings, user)
    return ok(LoginOut(token=token, expiresIn=expires_in, user=_user_out(user)))


@router.get("/user/auth/me", response_model=Envelope[UserOut])
async def me(principal: PrincipalDep) -> Envelope[UserOut]:
    return ok(UserOut(userId=principal.user_id, username=principal.username, role=principal.role))


@router.post("/user/auth/password", response_model=Envelope[None])
async def change_password(
    body: PasswordChange, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[None]:
    await service.change_password(ctx.db, principal.user_id, body.oldPassword, body.newPassword)
    return ok(None)


@router.post("/user/api-keys", response_model=Envelope[ApiKeyCreated])
async def create_api_key(
    body: ApiKeyCreate, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[ApiKeyCreated]:
    key, raw = await service.create_api_key(ctx.db, principal.user_id, body.name)
    out = _key_out(key, ctx.settings.timezone)
    return ok(ApiKeyCreated(**out.model_dump(), key=raw))


@router.get("/user/api-keys", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(ctx: ContextDep, principal: PrincipalDep) -> Envelope[list[ApiKeyOut]]:
    keys = await service.list_api_keys(ctx.db, principal.user_id)
    return ok([_key_out(k, ctx.settings.timezone) for k in keys])


# Ids are 63-bit on every database; a larger number is simply no id of ours.
KeyId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.delete("/user/api-keys/{key_id}", response_model=Envelope[None])
async def delete_api_key(key_id: KeyId, ctx: ContextDep, principal: PrincipalDep) -> Envelope[None]:
    await service.revoke_api_key(ctx.db, principal.user_id, key_id)
    return ok(None)
