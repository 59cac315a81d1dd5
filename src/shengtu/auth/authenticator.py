"""Resolves a login token (JWT) or an API key to the live user behind it, on every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, select, update

from shengtu.auth import security
from shengtu.auth.principal import Principal, networks
from shengtu.db import Database, utcnow
from shengtu.errors import Forbidden, Unauthorized
from shengtu.logs import get_logger
from shengtu.models.accounts import ApiKey, User

log = get_logger("shengtu.accounts")

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
