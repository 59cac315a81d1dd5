"""What an operator does to users: find, inspect, disable, reset, promote, credit, delete.

Each change is one transaction with its audit entry. An admin cannot disable, demote or
delete their own account: the last admin must not lock the site out by a slip."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.accounts.admin_schemas import AdminUserChange
from shengtu.accounts.service import check_password, get_user_by_name, store_password
from shengtu.audit import service as audit
from shengtu.auth import security
from shengtu.auth.principal import Principal
from shengtu.auth.security import CLI_GATE
from shengtu.db import Database
from shengtu.errors import BadRequest, NotFound
from shengtu.gates import Gate
from shengtu.groups.service import get_group
from shengtu.models.accounts import ApiKey, User
from shengtu.models.points import PointsAccount, PointsLedger
from shengtu.models.tasks import AiTask
from shengtu.points import service as points


def user_not_found(user_id: int) -> NotFound:
    return NotFound(f"用户 {user_id} 不存在")


def snapshot(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "group": user.group_name,
        "active": user.is_active,
    }


async def find_users(
    session: AsyncSession,
    *,
    page: int,
    size: int,
    q: str | None,
    role: str | None,
    group: str | None,
    active: bool | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> tuple[list[tuple[User, int]], int]:
    where: list[Any] = []
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses: list[Any] = [User.username.like(pattern, escape="\\")]
        if q.isdigit() and len(q) < 19:
            clauses.append(User.id == int(q))
        where.append(or_(*clauses))
    if role:
        where.append(User.role == role)
    if group:
        where.append(User.group_name == group)
    if active is not None:
        where.append(User.is_active.is_(active))
    if created_from is not None:
        where.append(User.created_at >= created_from)
    if created_to is not None:
        where.append(User.created_at < created_to)
    total = await session.scalar(select(func.count()).select_from(User).where(*where))
    rows = await session.execute(
        select(User, func.coalesce(PointsAccount.balance, 0))
        .outerjoin(PointsAccount, PointsAccount.user_id == User.id)
        .where(*where)
        .order_by(User.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return [(u, int(b)) for u, b in rows.tuples()], int(total or 0)


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise user_not_found(user_id)
    return user


async def user_detail(
    session: AsyncSession, user_id: int
) -> tuple[User, int, dict[str, int], list[AiTask], list[ApiKey], list[PointsLedger]]:
    user = await get_user(session, user_id)
    account = await session.get(PointsAccount, user_id)
    counts = dict(
        (
            await session.execute(
                select(AiTask.status, func.count())
                .where(AiTask.user_id == user_id)
                .group_by(AiTask.status)
            )
        )
        .tuples()
        .all()
    )
    tasks = await session.scalars(
        select(AiTask).where(AiTask.user_id == user_id).order_by(AiTask.id.desc()).limit(10)
    )
    keys = await session.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.id.desc())
    )
    ledger, _ = await points.records(session, user_id, 1, 20)
    balance = account.balance if account is not None else 0
    return (
        user,
        balance,
        {str(k): int(v) for k, v in counts.items()},
        list(tasks),
        list(keys),
        ledger,
    )


def _not_self(actor: Principal, user: User, action: str) -> None:
    if user.id == actor.user_id:
        raise BadRequest(f"不能{action}自己的账号")


async def change_user(
    db: Database, actor: Principal, user_id: int, change: AdminUserChange
) -> tuple[User, int]:
    """The user as changed, and their balance."""
    async with db.write() as session:
        user = await get_user(session, user_id)
        before = snapshot(user)
        if change.active is False:
            _not_self(actor, user, "停用")
        if change.role is not None and change.role != "admin":
            _not_self(actor, user, "取消管理员权限:")
        if change.group is not None:
            user.group_name = (await get_group(session, change.group.strip())).name
        if change.active is not None:
            user.is_active = change.active
        if change.role is not None:
            user.role = change.role
        after = snapshot(user)
        if after != before:
            await audit.record(session, actor, "user.change", f"user:{user.id}", before, after)
        await session.flush()
        balance = (await points.balance(session, user.id)).balance
    return user, balance


async def reset_password(
    db: Database, actor: Principal, user_id: int, password: str, gate: Gate = CLI_GATE
) -> None:
    """A new password set by an operator: every token of the user ends (their API keys
    stay: the user keeps their integrations)."""
    if user_id == actor.user_id:
        # A reset needs no old password: an admin's own goes through the password change.
        raise BadRequest("不能重置自己的密码:请在账号设置中用原密码修改")
    new_hash = await gate.run(security.hash_password, check_password(password))
    async with db.write() as session:
        user = await get_user(session, user_id)
        await store_password(session, user.id, new_hash)
        await audit.record(session, actor, "user.password_reset", f"user:{user.id}")


async def change_points(
    db: Database, actor: Principal, user_id: int, amount: int, note: str | None
) -> int:
    if amount == 0:
        raise BadRequest("参数错误:积分变动不能为 0")
    async with db.write() as session:
        user = await get_user(session, user_id)
        return await grant_or_take(session, actor, user, amount, note)


async def grant_by_name(
    db: Database, actor: Principal, username: str, amount: int, note: str | None
) -> tuple[int, int]:
    """``/admin/points/grant``: the user's id and balance after."""
    if amount == 0:
        raise BadRequest("调整积分不能为 0")
    async with db.write() as session:
        user = await get_user_by_name(session, username)
        return user.id, await grant_or_take(session, actor, user, amount, note)


async def grant_or_take(
    session: AsyncSession, actor: Principal, user: User, amount: int, note: str | None
) -> int:
    """Grant (positive) or take back (negative, never below zero); the balance after."""
    before = await points.balance(session, user.id)
    balance_before = before.balance
    if amount > 0:
        after = await points.grant(session, user.id, amount, note or "管理员发放")
    else:
        after = await points.adjust(session, user.id, amount, note or "管理员调整")
    await audit.record(
        session,
        actor,
        "points.grant" if amount > 0 else "points.take",
        f"user:{user.id}",
        {"balance": balance_before},
        {"balance": after, "amount": amount, "note": note},
    )
    return after


async def delete_user(db: Database, actor: Principal, user_id: int) -> None:
    async with db.write() as session:
        user = await get_user(session, user_id)
        _not_self(actor, user, "删除")
        await audit.record(session, actor, "user.delete", f"user:{user.id}", snapshot(user))
        await session.delete(user)


async def find_users_in(
    db: Database,
    *,
    page: int,
    size: int,
    q: str | None,
    role: str | None,
    group: str | None,
    active: bool | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> tuple[list[tuple[User, int]], int]:
    """:func:`find_users`, in a read of its own."""
    async with db.read() as session:
        return await find_users(
            session,
            page=page,
            size=size,
            q=q,
            role=role,
            group=group,
            active=active,
            created_from=created_from,
            created_to=created_to,
        )


async def user_view(
    db: Database, user_id: int
) -> tuple[User, int, dict[str, int], list[AiTask], list[ApiKey], list[PointsLedger]]:
    """:func:`user_detail`, in a read of its own."""
    async with db.read() as session:
        return await user_detail(session, user_id)
