"""Price groups for the operator: each change in one transaction with its audit entry."""

from __future__ import annotations

from decimal import Decimal

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.db import Database
from shengtu.groups import service
from shengtu.models.groups import UserGroup


def _snapshot(group: UserGroup) -> dict[str, str]:
    return {
        "multiplier": str(Decimal(group.multiplier).normalize()),
        "description": group.description,
    }


async def groups(db: Database) -> list[tuple[UserGroup, int]]:
    """Every group with how many users it has."""
    async with db.read() as session:
        return await service.all_groups(session)


async def create(
    db: Database, actor: Principal, name: str, multiplier: Decimal, description: str
) -> UserGroup:
    async with db.write() as session:
        group = await service.create(session, name, multiplier, description)
        await audit.record(
            session, actor, "group.create", f"group:{group.name}", None, _snapshot(group)
        )
    return group


async def change(
    db: Database,
    actor: Principal,
    name: str,
    multiplier: Decimal | None,
    description: str | None,
) -> tuple[UserGroup, int]:
    """The group as changed, with how many users it has."""
    async with db.write() as session:
        group = await service.get_group(session, name)
        before = _snapshot(group)
        if multiplier is not None:
            group.multiplier = service.check_multiplier(multiplier)
        if description is not None:
            group.description = description
        await session.flush()
        await audit.record(
            session, actor, "group.change", f"group:{group.name}", before, _snapshot(group)
        )
        users = dict((g.name, n) for g, n in await service.all_groups(session))[group.name]
    return group, users


async def remove(db: Database, actor: Principal, name: str) -> None:
    """Only an empty group, and never ``default``."""
    async with db.write() as session:
        group = await service.remove(session, name)
        await audit.record(session, actor, "group.delete", f"group:{group.name}", _snapshot(group))
