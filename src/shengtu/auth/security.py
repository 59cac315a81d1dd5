"""Passwords (argon2), tokens (JWT, HS256 pinned) and API keys (``sk-…``, kept as SHA-256)."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shengtu.gates import Gate

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "shengtu"
API_KEY_PREFIX = "sk-"
TOKEN_LEEWAY_SECONDS = 5

_hasher = PasswordHasher()


def configure_hashing(time_cost: int, memory_kib: int) -> None:
    """argon2's cost for the hashes made from now on; a stored hash verifies with the cost
    it was made with, so changing it locks nobody out."""
    global _hasher
    if (_hasher.time_cost, _hasher.memory_cost) != (time_cost, memory_kib):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _dummy_hash.cache_clear()


@functools.cache
def _dummy_hash() -> str:
    """A real hash to verify against when the user does not exist, so that a wrong
    username costs as long as a wrong password. Made on first use: every CLI command
    imports this module, and a hash costs a third of a second."""
    return _hasher.hash("shengtu-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    epoch: int
    # The user's own random value: a user id can come back (a deleted user's, on a
    # database that reuses ids), this cannot, so a token never opens another account.
    nonce: str
    expires_at: float  # Unix time, with the leeway ``decode_token`` allows


def issue_token(
    secret: str, user_id: int, epoch: int, nonce: str, ttl: timedelta
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires = now + ttl
    payload = {
        "sub": str(user_id),
        "ep": epoch,
        "un": nonce,
        "iss": JWT_ISSUER,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM), expires


def decode_token(secret: str, token: str) -> TokenClaims | None:
    """The claims of a valid token, else None. Only HS256 is accepted, whatever the header says."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["sub", "exp", "iat", "iss", "un"]},
            leeway=TOKEN_LEEWAY_SECONDS,
        )
        user_id = int(payload["sub"])
        nonce = payload["un"]
        if not 0 < user_id < 2**63 or not isinstance(nonce, str) or not nonce:
            return None
        return TokenClaims(
            user_id=user_id,
            epoch=int(payload.get("ep", 0)),
            nonce=nonce,
            expires_at=float(payload["exp"]) + TOKEN_LEEWAY_SECONDS,
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(raw: str) -> str:
    # API keys carry 256 bits of entropy: a fast hash is enough and keeps auth cheap.
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_gate(slots: int = 2, wait: float = 10.0) -> Gate:
    return Gate(slots, wait, "服务器繁忙(密码校验排队过长),请稍后再试")


# The CLI's gate: one process, one operator.
CLI_GATE = hash_gate()
