from __future__ import annotations

from fastapi import APIRouter, Request

from shengtu.accounts import service
from shengtu.accounts.schemas import (
    ApiKeyChange,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Credentials,
    LoginOut,
    PasswordChange,
    PasswordChanged,
    Registration,
    UserOut,
)
from shengtu.api.envelope import Envelope, ok
from shengtu.api.inputs import RowId
from shengtu.auth.deps import PrincipalDep
from shengtu.auth.principal import require_login_token
from shengtu.codes import service as codes
from shengtu.context import ContextDep
from shengtu.models.accounts import ApiKey, User
from shengtu.timefmt import fmt

router = APIRouter(tags=["accounts"])


def _user_out(user: User) -> UserOut:
    return UserOut(userId=user.id, username=user.username, role=user.role)


def key_out(key: ApiKey, tz: str) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        createTime=fmt(key.created_at, tz) or "",
        lastUsedTime=fmt(key.last_used_at, tz),
        quotaPoints=key.quota_points,
        spentPoints=key.spent_points or 0,
        expireTime=fmt(key.expires_at, tz),
        allowedModels=key.allowed_models,
        allowedCidrs=key.allowed_cidrs,
    )


@router.post("/user/auth/register", response_model=Envelope[UserOut])
async def register(body: Registration, request: Request, ctx: ContextDep) -> Envelope[UserOut]:
    code = service.sign_up_code(ctx.settings.effective_register_mode, body.code)
    # The cheap checks first: a refusal costs no password hash.
    service.check_username(body.username)
    service.check_password(body.password)
    await ctx.limits.registration(ctx.clients.of(request.scope))

    user = await service.create_user(
        ctx.db,
        body.username,
        body.password,
        points_amount=ctx.settings.register_points,
        gate=ctx.hashing,
        on_create=codes.spent_at_sign_up(code) if code else None,
    )
    return ok(_user_out(user))


@router.post("/user/auth/login", response_model=Envelope[LoginOut])
async def login(body: Credentials, request: Request, ctx: ContextDep) -> Envelope[LoginOut]:
    client = ctx.clients.of(request.scope)
    attempt = await ctx.limits.login_attempt(body.username, client)
    user = await service.authenticate(ctx.db, body.username, body.password, ctx.hashing)
    await ctx.limits.login_succeeded(body.username, client, attempt)
    token, expires_in = service.issue_token(ctx.settings, user)
    return ok(LoginOut(token=token, expiresIn=expires_in, user=_user_out(user)))


@router.get("/user/auth/me", response_model=Envelope[UserOut])
async def me(principal: PrincipalDep) -> Envelope[UserOut]:
    return ok(UserOut(userId=principal.user_id, username=principal.username, role=principal.role))


@router.post("/user/auth/password", response_model=Envelope[PasswordChanged])
async def change_password(
    body: PasswordChange, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[PasswordChanged]:
    """Ends every older token; revokes every API key unless ``keepApiKeys`` is true."""
    require_login_token(principal, "修改密码")
    revoked = await service.change_password(
        ctx.db,
        principal.user_id,
        body.oldPassword,
        body.newPassword,
        keep_api_keys=body.keepApiKeys,
        gate=ctx.hashing,
    )
    return ok(PasswordChanged(revokedApiKeys=revoked))


@router.post("/user/api-keys", response_model=Envelope[ApiKeyCreated])
async def create_api_key(
    body: ApiKeyCreate, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[ApiKeyCreated]:
    require_login_token(principal, "创建 API Key")
    key, raw = await service.create_api_key(ctx.db, principal.user_id, body, ctx.settings.timezone)
    out = key_out(key, ctx.settings.timezone)
    return ok(ApiKeyCreated(**out.model_dump(), key=raw))


@router.get("/user/api-keys", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(ctx: ContextDep, principal: PrincipalDep) -> Envelope[list[ApiKeyOut]]:
    keys = await service.list_api_keys(ctx.db, principal.user_id)
    return ok([key_out(k, ctx.settings.timezone) for k in keys])


@router.put("/user/api-keys/{key_id}", response_model=Envelope[ApiKeyOut])
async def change_api_key(
    key_id: RowId, body: ApiKeyChange, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[ApiKeyOut]:
    """Change a key's name or controls (quota, expiry, models, networks); null removes one."""
    require_login_token(principal, "修改 API Key")
    tz = ctx.settings.timezone
    key = await service.change_api_key(ctx.db, principal.user_id, key_id, body, tz)
    return ok(key_out(key, tz))


@router.delete("/user/api-keys/{key_id}", response_model=Envelope[None])
async def delete_api_key(key_id: RowId, ctx: ContextDep, principal: PrincipalDep) -> Envelope[None]:
    require_login_token(principal, "删除 API Key")
    await service.revoke_api_key(ctx.db, principal.user_id, key_id)
    return ok(None)
