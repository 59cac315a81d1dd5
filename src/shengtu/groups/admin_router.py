"""``/admin/groups``: price groups and their multipliers (admins only)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from shengtu.api.envelope import Envelope, ok
from shengtu.api.inputs import RequestBody
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.groups import admin_service as service
from shengtu.models.groups import UserGroup

router = APIRouter(tags=["admin: groups"])

GroupName = Annotated[str, Path(min_length=1, max_length=32)]


class GroupOut(BaseModel):
    name: str
    multiplier: Decimal
    description: str
    users: int


class GroupCreate(RequestBody):
    name: str = Field(min_length=1, max_length=32)
    multiplier: Decimal = Field(default=Decimal(1), ge=0, le=100)
    description: str = Field(default="", max_length=255)


class GroupChange(RequestBody):
    multiplier: Decimal | None = Field(default=None, ge=0, le=100)
    description: str | None = Field(default=None, max_length=255)


def group_out(group: UserGroup, users: int) -> GroupOut:
    return GroupOut(
        name=group.name,
        multiplier=Decimal(group.multiplier).normalize(),
        description=group.description,
        users=users,
    )


@router.get("/admin/groups", response_model=Envelope[list[GroupOut]])
async def list_groups(ctx: ContextDep, _: AdminDep) -> Envelope[list[GroupOut]]:
    """Every group with its multiplier: a user pays ⌈model points × multiplier⌉."""
    return ok([group_out(g, n) for g, n in await service.groups(ctx.db)])


@router.post("/admin/groups", response_model=Envelope[GroupOut])
async def create_group(body: GroupCreate, ctx: ContextDep, admin: AdminDep) -> Envelope[GroupOut]:
    group = await service.create(ctx.db, admin, body.name, body.multiplier, body.description)
    return ok(group_out(group, 0))


@router.put("/admin/groups/{group_name}", response_model=Envelope[GroupOut])
async def change_group(
    group_name: GroupName, body: GroupChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[GroupOut]:
    """A new multiplier applies to every submit after it, in every process."""
    group, users = await service.change(
        ctx.db, admin, group_name, body.multiplier, body.description
    )
    return ok(group_out(group, users))


@router.delete("/admin/groups/{group_name}", response_model=Envelope[None])
async def delete_group(group_name: GroupName, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    """Only an empty group, and never ``default``."""
    await service.remove(ctx.db, admin, group_name)
    return ok(None)
