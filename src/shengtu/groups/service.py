"""Price groups: a user pays a model's points × their group's multiplier, rounded up to a
whole point (the operator never sells a fraction of a point below its price); the
arithmetic is ``shengtu.pricing``'s."""

from __future__ import annotations

import re
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.errors import BadRequest, Conflict, NotFound
from shengtu.models.accounts import User
from shengtu.models.groups import DEFAULT_GROUP, UserGroup

GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
MAX_MULTIPLIER = Decimal(100)


def check_name(name: str) -> str:
    name = name.strip()
    if not GROUP_NAME_RE.match(name):
        raise BadRequest("参数错误:分组名须为 1-32 位字母、数字、下划线或连字符")
    return name


def check_multiplier(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= MAX_MULTIPLIER:
        raise BadRequest(f"参数错误:价格倍率须在 0 到 {MAX_MULTIPLIER} 之间")
    if value.as_tuple().exponent < -4:  # type: ignore[operator]
        raise BadRequest("参数错误:价格倍率最多 4 位小数")
    return value


async def all_groups(session: AsyncSession) -> list[tuple[UserGroup, int]]:
    """Every group with how many users it has."""
    members = select(User.group_name, func.count().label("n")).group_by(User.group_name).subquery()
    rows = await session.execute(
        select(UserGroup, func.coalesce(members.c.n, 0))
        .outerjoin(members, members.c.group_name == UserGroup.name)
        .order_by(UserGroup.id)
    )
    return [(g, int(n)) for g, n in rows.tuples()]


async def get_group(session: AsyncSession, name: str) -> UserGroup:
    group = await session.scalar(select(UserGroup).where(UserGroup.name == name))
    if group is None:
        raise NotFound(f"分组 {name[:32]} 不存在")
    return group


async def create(
    session: AsyncSession, name: str, multiplier: Decimal, description: str
) -> UserGroup:
    group = UserGroup(
        name=check_name(name), multiplier=check_multiplier(multiplier), description=description
    )
    session.add(group)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"分组 {group.name} 已存在") from exc
    return group


async def remove(session: AsyncSession, name: str) -> UserGroup:
    group = await get_group(session, name)
    if group.name == DEFAULT_GROUP:
        raise BadRequest("默认分组 default 不能删除")
    members = await session.scalar(
        select(func.count()).select_from(User).where(User.group_name == group.name)
    )
    if members:
        raise Conflict(f"分组 {group.name} 下还有 {members} 个用户,请先把他们移到其他分组")
    await session.delete(group)
    return group
