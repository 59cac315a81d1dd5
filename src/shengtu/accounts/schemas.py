from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from shengtu.api.inputs import RequestBody


class Credentials(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Registration(Credentials):
    # An invitation or redemption code: needed when SHENGTU_REGISTER_MODE=code; elsewhere
    # optional, and its points are credited to the new account.
    code: str | None = Field(default=None, max_length=80)


class PasswordChange(RequestBody):
    oldPassword: str = Field(min_length=1, max_length=256)
    newPassword: str = Field(min_length=1, max_length=256)
    # By default a password change revokes every API key too; true keeps them.
    keepApiKeys: bool = False


class PasswordChanged(BaseModel):
    revokedApiKeys: int


class UserOut(BaseModel):
    userId: int
    username: str
    role: str


class LoginOut(BaseModel):
    token: str
    tokenType: str = "Bearer"
    expiresIn: int
    user: UserOut


class ApiKeyControls(RequestBody):
    """A key's optional limits; on a change, a field sent as null removes that limit."""

    # What the key's tasks may be charged in all, net of refunds.
    quotaPoints: int | None = Field(default=None, ge=1, le=10**12)
    # Local time (the site's timezone) unless it carries an offset.
    expireTime: datetime | None = None
    allowedModels: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=100
    )
    allowedCidrs: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50
    )

    @field_validator("allowedCidrs")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for cidr in value:
            try:
                out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"allowedCidrs 中 {cidr[:64]} 不是合法的 IP 或 CIDR") from exc
        return out


class ApiKeyCreate(ApiKeyControls):
    name: str = Field(default="default", max_length=64)


class ApiKeyChange(ApiKeyControls):
    name: str | None = Field(default=None, min_length=1, max_length=64)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    createTime: str
    lastUsedTime: str | None
    quotaPoints: int | None = None
    spentPoints: int = 0
    expireTime: str | None = None
    allowedModels: list[str] | None = None
    allowedCidrs: list[str] | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str
