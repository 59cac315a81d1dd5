"""Users and API keys: the rules, no HTTP."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.accounts import security
from shengtu.accounts.schemas import ApiKeyChange, ApiKeyControls, ApiKeyCreate
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from shengtu.gates import Gate
from shengtu.logs import get_logger
from shengtu.models.accounts import ApiKey, User
from shengtu.models.catalog import PointsConfig
from shengtu.points import service as points
from shengtu.timefmt import to_utc

log = get_logger("shengtu.accounts")

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128
API_KEY_LIMIT = 20


# The note of the sign-up bonus (SHENGTU_REGISTER_POINTS): points every new account gets,
# which make no one a paying user (events/service.py).
SIGNUP_BONUS_NOTE = "开户赠送"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, and the API key when one was used."""

    user_id: int
    username: str
    role: str
    api_key_id: int | None = None
    # The key's controls (None: no limit): the models it may use, the client networks it
    # may be used from.
    key_models: tuple[str, ...] | None = None
    key_networks: tuple[IPNetwork, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_gate(slots: int = 2, wait: float = 10.0) -> Gate:
    return Gate(slots, wait, "服务器繁忙(密码校验排队过长),请稍后再试")


# The CLI's gate: one process, one operator.
CLI_GATE = hash_gate()


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
                await points.grant(session, user.id, points_amount, note=SIGNUP_BONUS_NOTE)
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


_USER_BY_ID = select(
    User.username, User.role, User.is_active, User.auth_epoch, User.auth_nonce
).where(User.id == bindparam("user_id"))
_KEY_BY_HASH = (
    select(
        ApiKey.id,
        ApiKey.last_used_at,
        User.id,
        User.username,
        User.role,
        User.is_active,
        ApiKey.expires_at,
        ApiKey.allowed_models,
        ApiKey.allowed_cidrs,
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)
KEY_TOUCH_SECONDS = 60
KEY_TOUCH_BATCH_SECONDS = 0.5
_VERIFIED_TOKENS_MAX = 100_000


NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Joined:
    """A row read in the same statement as the caller's user: ``columns`` of ``target``,
    left-joined ``on`` the user (``User.id``), so that the caller is found whether or not
    that row is (its values are then all None). One statement instead of two: the hot reads
    (:mod:`shengtu.edge.hot`) need the caller and one row of theirs on every request."""

    columns: tuple[Any, ...]
    target: Any
    on: ColumnElement[bool]


class Authenticator:
    """Resolves a JWT or an ``sk-`` key to a live user, or raises 401.

    Every call reads the user (or the key and its user): a disabled user, a password
    change (the epoch) or a revoked key takes effect on the next request. What is kept is
    only what cannot change: that a token string carries a valid signature and these
    claims, until it expires.
    """

    def __init__(self, db: Database, secret: str) -> None:
        self._db = db
        self._secret = secret
        self._verified: dict[str, security.TokenClaims] = {}
        self._touch_pending: dict[int, datetime] = {}
        self._toucher: asyncio.Task[None] | None = None
        self._joined: dict[tuple[Select[*tuple[Any, ...]], Joined], Select[*tuple[Any, ...]]] = {}

    def _claims(self, token: str) -> security.TokenClaims | None:
        claims = self._verified.get(token)
        if claims is not None:
            if claims.expires_at > time.time():
                return claims
            del self._verified[token]
        claims = security.decode_token(self._secret, token)
        if claims is not None:
            if len(self._verified) >= _VERIFIED_TOKENS_MAX:
                self._verified.clear()
            self._verified[token] = claims
        return claims

    async def principal(self, credential: str) -> Principal:
        principal, _ = await self.principal_with(credential)
        return principal

    async def principal_with(
        self, credential: str, joined: Joined | None = None, params: Mapping[str, Any] = NO_PARAMS
    ) -> tuple[Principal, tuple[Any, ...]]:
        """The caller, and the values of the ``joined`` row (bound by ``params``)."""
        credential = credential.strip()
        if credential.startswith(security.API_KEY_PREFIX):
            return await self._from_api_key(credential, joined, params)
        claims = self._claims(credential)
        if claims is None:
            raise Unauthorized()
        row = await self._db.first(
            self._statement(_USER_BY_ID, joined), {**params, "user_id": claims.user_id}
        )
        if row is None:
            raise Unauthorized()
        username, role, active, epoch, nonce = row[:5]
        if not active or epoch != claims.epoch or nonce != claims.nonce:
            raise Unauthorized()
        return Principal(user_id=claims.user_id, username=username, role=role), row[5:]

    async def _from_api_key(
        self, raw: str, joined: Joined | None, params: Mapping[str, Any]
    ) -> tuple[Principal, tuple[Any, ...]]:
        row = await self._db.first(
            self._statement(_KEY_BY_HASH, joined),
            {**params, "key_hash": security.api_key_hash(raw)},
        )
        if row is None:
            raise Unauthorized("API Key 无效或已吊销")
        key_id, last_used, user_id, username, role, active, expires, models, cidrs = row[:9]
        if not active:
            raise Unauthorized()
        now = utcnow()
        if expires is not None and expires <= now:
            raise Forbidden("API Key 已过期,请在控制台延长有效期或创建新的 Key")
        if last_used is None or (now - last_used).total_seconds() > KEY_TOUCH_SECONDS:
            self._touch(key_id, now)
        principal = Principal(
            user_id=user_id,
            username=username,
            role=role,
            api_key_id=key_id,
            key_models=tuple(models) if models is not None else None,
            key_networks=networks(tuple(cidrs)) if cidrs else None,
        )
        return principal, row[9:]

    def _statement(
        self, base: Select[*tuple[Any, ...]], joined: Joined | None
    ) -> Select[*tuple[Any, ...]]:
        """``base``, with ``joined``'s columns; built once per pair (the row reader keeps
        each statement compiled, by identity)."""
        if joined is None:
            return base
        statement = self._joined.get((base, joined))
        if statement is None:
            statement = base.add_columns(*joined.columns).outerjoin(joined.target, joined.on)
            self._joined[(base, joined)] = statement
        return statement

    def _touch(self, key_id: int, now: datetime) -> None:
        """Record the key's use, at most about once a minute, without the request waiting:
        it is a hint for the key list, not part of the answer. The uses of the next half
        second are written together, in one transaction: one write per key, each holding
        SQLite's writer in turn, stalled every request when many keys came back at once."""
        self._touch_pending[key_id] = now
        if self._toucher is None or self._toucher.done():
            self._toucher = asyncio.create_task(self._write_touches())

    async def _write_touches(self) -> None:
        await asyncio.sleep(KEY_TOUCH_BATCH_SECONDS)
        pending, self._touch_pending = self._touch_pending, {}
        try:
            async with self._db.write() as session:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id.in_(sorted(pending)))
                    .values(last_used_at=max(pending.values()))
                )
        except Exception as exc:
            log.warning("api_key_touch_failed", keys=len(pending), error=repr(exc)[:200])

    async def aclose(self) -> None:
        """Write the key uses still waiting (a moment's worth)."""
        if self._toucher is not None and not self._toucher.done():
            await asyncio.wait([self._toucher], timeout=5)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=4096)
def networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def check_client(principal: Principal, client_address: Callable[[], str]) -> None:
    """A key with allowed networks works only from a client address inside one of them.
    The address is worked out only for such a key (not on every request)."""
    if principal.key_networks is None:
        return
    address = client_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is None or not any(ip in net for net in principal.key_networks):
        raise Forbidden(f"该 API Key 不允许从地址 {address[:64]} 使用")


def require_login_token(principal: Principal, action: str) -> None:
    """Managing keys and the password needs a login token: a leaked key must not mint
    more keys (that outlive its revocation) or lock its owner out."""
    if principal.api_key_id is not None:
        raise Forbidden(f"{action}需要使用登录 Token,不能使用 API Key")


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
