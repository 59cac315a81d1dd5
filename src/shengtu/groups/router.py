"""``/admin/groups``: price groups and their multipliers (admins only)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from shengtu.api.envelope import Envelope, ok
from shengtu.api.inputs import RequestBody
from shengtu.audit import service as audit
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.groups import service
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


def _snapshot(group: UserGroup) -> dict[str, str]:
    return {
        "multiplier": str(Decimal(group.multiplier).normalize()),
        "description": group.description,
    }


@router.get("/admin/groups", response_model=Envelope[list[GroupOut]])
async def list_groups(ctx: ContextDep, _: AdminDep) -> Envelope[list[GroupOut]]:
    """Every group with its multiplier: a user pays ⌈model points × multiplier⌉."""
    async with ctx.db.read() as session:
        return ok([group_out(g, n) for g, n in await service.all_groups(session)])


@router.post("/admin/groups", response_model=Envelope[GroupOut])
async def create_group(body: GroupCreate, ctx: ContextDep, admin: AdminDep) -> Envelope[GroupOut]:
    async with ctx.db.write() as session:
        group = await service.create(session, body.name, body.multiplier, body.description)
        await audit.record(
            session, admin, "group.create", f"group:{group.name}", None, _snapshot(group)
        )
    return ok(group_out(group, 0))


@router.put("/admin/groups/{group_name}", response_model=Envelope[GroupOut])
async def change_group(
    group_name: GroupName, body: GroupChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[GroupOut]:
    """A new multiplier applies to every submit after it, in every process."""
    async with ctx.db.write() as session:
        group = await service.get_group(session, group_name)
        before = _snapshot(group)
        if body.multiplier is not None:
            group.multiplier = service.check_multiplier(body.multiplier)
        if body.description is not None:
            group.description = body.description
        await session.flush()
        await audit.record(
            session, admin, "group.change", f"group:{group.name}", before, _snapshot(group)
        )
        users = dict((g.name, n) for g, n in await service.all_groups(session))[group.name]
    return ok(group_out(group, users))


@router.delete("/admin/groups/{group_name}", response_model=Envelope[None])
async def delete_group(group_name: GroupName, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    """Only an empty group, and never ``default``."""
    async with ctx.db.write() as session:
        group = await service.remove(session, group_name)
        await audit.record(session, admin, "group.delete", f"group:{group.name}", _snapshot(group))
    return ok(None)
