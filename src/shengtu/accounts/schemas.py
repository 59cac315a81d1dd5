from __future__ import annotations

from pydantic import BaseModel, Field

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


class ApiKeyCreate(RequestBody):
    name: str = Field(default="default", max_length=64)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    createTime: str
    lastUsedTime: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str
