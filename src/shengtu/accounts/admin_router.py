"""``/admin/users``: the operator's view of and hand on every account (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from shengtu.accounts import admin_service as service
from shengtu.accounts.admin_schemas import (
    AdminUserChange,
    AdminUserDetail,
    AdminUserOut,
    PasswordReset,
    PointsChange,
)
from shengtu.accounts.router import key_out
from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.api.inputs import RowId
from shengtu.auth.deps import AdminDep
from shengtu.context import AppContext, ContextDep
from shengtu.events.router import ACCOUNT_CHANGED
from shengtu.models.accounts import User
from shengtu.points.schemas import BalanceOut, GrantRequest, ledger_out
from shengtu.tasks.schemas import task_detail
from shengtu.timefmt import fmt, to_utc

router = APIRouter(tags=["admin: users"])


def user_out(user: User, balance: int, tz: str) -> AdminUserOut:
    return AdminUserOut(
        userId=user.id,
        username=user.username,
        role=user.role,
        group=user.group_name,
        active=user.is_active,
        balance=balance,
        createTime=fmt(user.created_at, tz) or "",
    )


async def _account_changed(ctx: AppContext, user_id: int) -> None:
    """The user's open WebSockets, in every process, check their credential now."""
    await ctx.bus.publish(user_id, {"event": ACCOUNT_CHANGED, "data": {}}, "0")


@router.get("/admin/users", response_model=Envelope[Page[AdminUserOut]])
async def list_users(
    ctx: ContextDep,
    _: AdminDep,
    page: PageNo = 1,
    size: PageSize = 20,
    q: Annotated[str | None, Query(max_length=64, description="用户名片段或用户 ID")] = None,
    role: Annotated[str | None, Query(max_length=16)] = None,
    group: Annotated[str | None, Query(max_length=32)] = None,
    active: bool | None = None,
    createdFrom: datetime | None = None,
    createdTo: datetime | None = None,
) -> Envelope[Page[AdminUserOut]]:
    tz = ctx.settings.timezone
    rows, total = await service.find_users_in(
        ctx.db,
        page=page,
        size=size,
        q=(q or "").strip() or None,
        role=role,
        group=group,
        active=active,
        created_from=to_utc(createdFrom, tz) if createdFrom else None,
        created_to=to_utc(createdTo, tz) if createdTo else None,
    )
    out = [user_out(u, b, tz) for u, b in rows]
    return ok(Page[AdminUserOut].of(out, total, page, size))


@router.get("/admin/users/{user_id}", response_model=Envelope[AdminUserDetail])
async def get_user(user_id: RowId, ctx: ContextDep, _: AdminDep) -> Envelope[AdminUserDetail]:
    tz = ctx.settings.timezone
    user, balance, counts, tasks, keys, ledger = await service.user_view(ctx.db, user_id)
    return ok(
        AdminUserDetail(
            **user_out(user, balance, tz).model_dump(),
            taskCounts=counts,
            recentTasks=[task_detail(t, tz) for t in tasks],
            apiKeys=[key_out(k, tz) for k in keys],
            recentLedger=[ledger_out(r, tz) for r in ledger],
        )
    )


@router.put("/admin/users/{user_id}", response_model=Envelope[AdminUserOut])
async def change_user(
    user_id: RowId, body: AdminUserChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[AdminUserOut]:
    """Disable or enable (a disabled user's tokens and keys are refused from their next
    request), make admin or user, move to a price group."""
    user, balance = await service.change_user(ctx.db, admin, user_id, body)
    await _account_changed(ctx, user_id)
    return ok(user_out(user, balance, ctx.settings.timezone))


@router.post("/admin/users/{user_id}/password", response_model=Envelope[None])
async def reset_password(
    user_id: RowId, body: PasswordReset, ctx: ContextDep, admin: AdminDep
) -> Envelope[None]:
    """Set a new password; every login token of the user stops working."""
    await service.reset_password(ctx.db, admin, user_id, body.password, ctx.hashing)
    await _account_changed(ctx, user_id)
    return ok(None)


@router.post("/admin/users/{user_id}/points", response_model=Envelope[BalanceOut])
async def change_points(
    user_id: RowId, body: PointsChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[BalanceOut]:
    """Grant (positive) or take back (negative, never below zero) points, with a note."""
    after = await service.change_points(ctx.db, admin, user_id, body.amount, body.note)
    return ok(BalanceOut(userId=user_id, balance=after, expireTime=None))


@router.post("/admin/points/grant", response_model=Envelope[BalanceOut], tags=["points"])
async def grant_points(
    body: GrantRequest, ctx: ContextDep, admin: AdminDep
) -> Envelope[BalanceOut]:
    """Grant (positive) or take back (negative, never below zero) a user's points, by name."""
    user_id, after = await service.grant_by_name(
        ctx.db, admin, body.username, body.amount, body.note
    )
    return ok(BalanceOut(userId=user_id, balance=after, expireTime=None))


@router.delete("/admin/users/{user_id}", response_model=Envelope[None])
async def delete_user(user_id: RowId, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    """Remove the user and everything that is theirs; to ban, disable instead."""
    await service.delete_user(ctx.db, admin, user_id)
    await _account_changed(ctx, user_id)
    return ok(None)
