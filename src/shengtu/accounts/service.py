"""Users and API keys: the rules, no HTTP."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.accounts.schemas import ApiKeyChange, ApiKeyControls, ApiKeyCreate
from shengtu.auth import security
from shengtu.auth.security import CLI_GATE
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from shengtu.gates import Gate
from shengtu.models.accounts import ApiKey, User
from shengtu.models.catalog import PointsConfig
from shengtu.points import service as points
from shengtu.timefmt import to_utc

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
API_KEY_LIMIT = 20


def check_username(username: str) -> str:
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise BadRequest("用户名须为 3-32 位字母、数字、汉字、下划线、点或连字符")
    return username


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadRequest(f"密码长度须为 {PASSWORD_MIN}-{PASSWORD_MAX} 位")
    return password


# Run inside the new user's transaction, after the user row exists (e.g. spending an
# invitation code): an exception undoes the whole registration.
OnCreate = Callable[[AsyncSession, User], Awaitable[None]]


async def create_user(
    db: Database,
    username: str,
    password: str,
    *,
    points_amount: int = 0,
    admin: bool = False,
    gate: Gate = CLI_GATE,
    on_create: OnCreate | None = None,
) -> User:
    username = check_username(username)
    password_hash = await gate.run(security.hash_password, check_password(password))
    try:
        async with db.write() as session:
            user = User(
                username=username, password_hash=password_hash, role="admin" if admin else "user"
            )
            session.add(user)
            await session.flush()
            await points.open_account(session, user.id)
            if points_amount > 0:
                await points.grant(session, user.id, points_amount, note=points.SIGNUP_BONUS_NOTE)
            if on_create is not None:
                await on_create(session, user)
    except IntegrityError as exc:
        raise Conflict(f"用户名 {username} 已被占用") from exc
    return user


async def delete_user(db: Database, username: str) -> None:
    """Remove the user and everything that is theirs (tasks, ledger, keys, files' rows).

    For data removal; to ban someone, :func:`set_active` (their history stays)."""
    async with db.write() as session:
        user = await get_user_by_name(session, username)
        await session.delete(user)


async def set_active(db: Database, username: str, active: bool) -> User:
    """Disable (ban) or enable a user: a disabled user's tokens and keys are refused on
    their very next request (:class:`Authenticator` reads ``is_active`` every time)."""
    async with db.write() as session:
        user = await get_user_by_name(session, username)
        user.is_active = active
    return user


async def authenticate(db: Database, username: str, password: str, gate: Gate = CLI_GATE) -> User:
    async with db.read() as session:
        user = await session.scalar(select(User).where(User.username == username.strip()))
    hashed = user.password_hash if user is not None else None
    valid = await gate.run(security.verify_password, hashed, password)
    if user is None or not valid or not user.is_active:
        raise Unauthorized("用户名或密码错误")
    return user


async def change_password(
    db: Database,
    user_id: int,
    old: str,
    new: str,
    *,
    keep_api_keys: bool = False,
    gate: Gate = CLI_GATE,
) -> int:
    """Change the password: every older token stops working, and unless ``keep_api_keys``
    every API key is revoked too (whoever knew the old password may have made one).
    Returns the number of keys revoked."""
    async with db.read() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise Unauthorized()
    if not await gate.run(security.verify_password, user.password_hash, old):
        raise BadRequest("原密码错误")
    new_hash = await gate.run(security.hash_password, check_password(new))
    async with db.write() as session:
        await store_password(session, user_id, new_hash)
        if keep_api_keys:
            return 0
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def store_password(session: AsyncSession, user_id: int, password_hash: str) -> None:
    """Set a new password hash; the epoch moves on, so every older token stops working."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=password_hash, auth_epoch=User.auth_epoch + 1)
    )


def issue_token(settings: Settings, user: User) -> tuple[str, int]:
    ttl = timedelta(minutes=settings.jwt_expire_minutes)
    token, _ = security.issue_token(
        settings.resolved_jwt_secret(), user.id, user.auth_epoch, user.auth_nonce, ttl
    )
    return token, int(ttl.total_seconds())


async def get_user_by_name(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"用户 {username} 不存在")
    return user


async def _key_controls(
    session: AsyncSession, controls: ApiKeyControls, tz: str, given: set[str]
) -> dict[str, Any]:
    """The columns of the controls in ``given``, checked: models must be in the catalog, an
    expiry in the future."""
    values: dict[str, Any] = {}
    if "quotaPoints" in given:
        values["quota_points"] = controls.quotaPoints
    if "expireTime" in given:
        expires = None if controls.expireTime is None else to_utc(controls.expireTime, tz)
        if expires is not None and expires <= utcnow():
            raise BadRequest("参数错误:expireTime 必须晚于现在")
        values["expires_at"] = expires
    if "allowedModels" in given:
        models = None if controls.allowedModels is None else sorted(set(controls.allowedModels))
        if models:
            known = set(
                await session.scalars(
                    select(PointsConfig.model_name).where(PointsConfig.model_name.in_(models))
                )
            )
            unknown = [m for m in models if m not in known]
            if unknown:
                raise BadRequest(f"参数错误:模型 {unknown[0][:64]} 不存在")
        values["allowed_models"] = models or None
    if "allowedCidrs" in given:
        values["allowed_cidrs"] = controls.allowedCidrs or None
    return values


async def create_api_key(
    db: Database, user_id: int, body: ApiKeyCreate, tz: str
) -> tuple[ApiKey, str]:
    name = body.name.strip() or "default"
    raw = security.new_api_key()
    async with db.write() as session:
        active = await session.scalar(
            select(ApiKey.id)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .offset(API_KEY_LIMIT - 1)
            .limit(1)
        )
        if active is not None:
            raise BadRequest(f"每个用户最多 {API_KEY_LIMIT} 个有效 API Key,请先删除不用的")
        controls = await _key_controls(session, body, tz, set(body.model_fields_set))
        key = ApiKey(
            user_id=user_id,
            name=name[:64],
            prefix=raw[:10],
            key_hash=security.api_key_hash(raw),
            spent_points=0,
            **controls,
        )
        session.add(key)
        await session.flush()
    return key, raw


async def change_api_key(
    db: Database, user_id: int, key_id: int, body: ApiKeyChange, tz: str
) -> ApiKey:
    """Change a live key's name or controls; they apply from its next request."""
    async with db.write() as session:
        key = await session.scalar(
            select(ApiKey).where(
                ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)
            )
        )
        if key is None:
            raise NotFound("API Key 不存在")
        given = set(body.model_fields_set)
        for column, value in (await _key_controls(session, body, tz, given)).items():
            setattr(key, column, value)
        if body.name is not None:
            key.name = body.name.strip()[:64] or key.name
        await session.flush()
    return key


async def list_api_keys(db: Database, user_id: int) -> list[ApiKey]:
    async with db.read() as session:
        rows = await session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id.desc())
        )
        return list(rows)


async def revoke_api_key(db: Database, user_id: int, key_id: int) -> None:
    async with db.write() as session:
        result = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if getattr(result, "rowcount", 0) != 1:
            raise NotFound("API Key 不存在")


def sign_up_code(mode: str, code: str | None) -> str:
    """The invitation code (a redemption code) a sign-up spends, "" for none, under the
    site's register mode; refuses a sign-up the mode does not allow."""
    if mode == "closed":
        raise Forbidden("本站未开放注册,请联系管理员")
    code = (code or "").strip()
    if mode == "code" and not code:
        raise BadRequest("本站注册需要邀请码(兑换码),请填写 code")
    return code
