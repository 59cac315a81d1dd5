"""``shengtu``: serve, worker, migrate, and the operator's commands."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer

from shengtu.auth.security import configure_hashing
from shengtu.channels.cli import channel_app
from shengtu.client import cli as client_cli
from shengtu.config import Settings, get_settings
from shengtu.db import Database, utcnow
from shengtu.errors import ShengtuError
from shengtu.logs import configure_logging

app = typer.Typer(help="Shengtu 生图: AI image generation billed in points.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
points_app = typer.Typer(help="Points.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
codes_app = typer.Typer(help="Redemption and invitation codes.", no_args_is_help=True)
app.add_typer(codes_app, name="codes")
app.add_typer(user_app, name="user")
app.add_typer(points_app, name="points")
app.add_typer(apikey_app, name="apikey")
app.add_typer(channel_app, name="channel")
# The API's client side (SHENGTU_API_URL, SHENGTU_API_KEY), not the server's database.
app.command("gen")(client_cli.gen)
app.command("tasks")(client_cli.tasks)
app.command("balance")(client_cli.balance)

T = TypeVar("T")
DEMO_USER = "demo"
DEMO_ADMIN = "admin"
DEMO_POINTS = 1000


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings)
    configure_hashing(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    return settings


def _with_db(settings: Settings, job: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(settings.resolved_database_url, pool_size=2)
        try:
            return await job(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except ShengtuError as exc:
        typer.secho(f"错误: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only")] = False,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve the API (and, unless --no-worker, the worker) on SHENGTU_PORT."""
    from shengtu.runner import serve as run_serve

    settings = _settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    from shengtu.runner import run

    run(run_serve(settings, with_worker=not no_worker))


@app.command()
def worker() -> None:
    """Run a worker alone: claims due tasks from the database and carries them to the end."""
    from shengtu.runner import run, work

    run(work(_settings()), accepts_connections=False)


@app.command()
def sandbox(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8090,
    key: Annotated[
        str | None, typer.Option(help="the key it accepts (several: comma-separated)")
    ] = None,
) -> None:
    """Run the sandbox upstream alone (it speaks the 速创 protocol)."""
    from shengtu.providers.registry import sandbox_key
    from shengtu.runner import run, sandbox_forever

    settings = _settings()
    run(sandbox_forever(settings, host, port, key or sandbox_key(settings)))


@app.command()
def migrate() -> None:
    """Create or upgrade every table (Alembic)."""
    from shengtu.migrate import upgrade

    settings = _settings()
    upgrade(settings)
    typer.echo("数据库已迁移到最新版本")


@user_app.command("create")
def user_create(
    name: str,
    password: Annotated[str, typer.Option("--password", "-p")],
    points: Annotated[int, typer.Option("--points", min=0)] = 0,
    admin: Annotated[bool, typer.Option("--admin")] = False,
) -> None:
    from shengtu.accounts.service import create_user

    user = _with_db(
        _settings(), lambda db: create_user(db, name, password, points_amount=points, admin=admin)
    )
    typer.echo(f"已创建用户 {user.username} (id={user.id}, role={user.role}, points={points})")


@user_app.command("delete")
def user_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="no question asked")] = False
) -> None:
    """Delete user NAME with their tasks, ledger and API keys."""
    from shengtu.accounts.service import delete_user

    if not yes:
        typer.confirm(f"删除用户 {name} 及其全部任务、流水和 API Key?", abort=True)
    _with_db(_settings(), lambda db: delete_user(db, name))
    typer.echo(f"已删除用户 {name}")


def _set_active(name: str, active: bool) -> None:
    from shengtu.accounts.service import set_active

    _with_db(_settings(), lambda db: set_active(db, name, active))


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Ban user NAME: their tokens and API keys stop working at once; their data stays."""
    _set_active(name, False)
    typer.echo(f"已停用用户 {name}")


@user_app.command("enable")
def user_enable(name: str) -> None:
    """Lift a ban."""
    _set_active(name, True)
    typer.echo(f"已启用用户 {name}")


@codes_app.command("create")
def codes_create(
    count: Annotated[int, typer.Option("--count", min=1, max=10_000)] = 1,
    points: Annotated[int, typer.Option("--points", min=0)] = 0,
    days: Annotated[float | None, typer.Option("--days", help="valid for this many days")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Make COUNT codes worth POINTS each (0: an invitation only); prints one a line."""
    from shengtu.codes.service import create_batch

    expires = utcnow() + timedelta(days=days) if days else None

    async def job(db: Database) -> list[str]:
        async with db.write() as session:
            made = await create_batch(session, count, points, note=note, expires_at=expires)
            return [c.code for c in made]

    for code in _with_db(_settings(), job):
        typer.echo(code)


@app.command()
def sweep() -> None:
    """Delete uploads no task used in time, and results, upstream exchanges and payment
    notifies that moved nothing past their retention, once."""
    from shengtu.assembly import build_context
    from shengtu.exchanges.service import prune
    from shengtu.payments.service import prune_notifies
    from shengtu.storage.service import sweep as run_sweep

    settings = _settings()

    async def job() -> str:
        ctx = build_context(settings, role="worker")
        await ctx.start()
        try:
            result = await run_sweep(ctx)
            exchanges = await prune(ctx)
            notifies = await prune_notifies(ctx)
        finally:
            await ctx.aclose()
        return (
            f"已删除未使用的上传 {result.uploads_deleted} 个, "
            f"过期结果图片 {result.results_expired} 个, "
            f"过期上游往来记录 {exchanges} 条, "
            f"过期的未入账支付通知 {notifies} 条"
        )

    typer.echo(asyncio.run(job()))


@points_app.command("grant")
def points_grant(
    name: str,
    amount: int,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Grant AMOUNT points to user NAME (a negative AMOUNT takes points back)."""
    from shengtu.accounts.service import get_user_by_name
    from shengtu.points import service

    async def job(db: Database) -> int:
        async with db.write() as session:
            user = await get_user_by_name(session, name)
            if amount > 0:
                return await service.grant(session, user.id, amount, note or "命令行发放")
            return await service.adjust(session, user.id, amount, note or "命令行调整")

    balance = _with_db(_settings(), job)
    typer.echo(f"用户 {name} 余额: {balance}")


@apikey_app.command("create")
def apikey_create(name: str, label: Annotated[str, typer.Option("--name")] = "cli") -> None:
    """Create an API key for user NAME; it is shown this once."""
    from shengtu.accounts.schemas import ApiKeyCreate
    from shengtu.accounts.service import create_api_key, get_user_by_name

    settings = _settings()

    async def job(db: Database) -> str:
        async with db.read() as session:
            user = await get_user_by_name(session, name)
        _, raw = await create_api_key(db, user.id, ApiKeyCreate(name=label), settings.timezone)
        return raw

    typer.echo(_with_db(settings, job))


@app.command()
def token(name: str) -> None:
    """Print a login token (JWT) for user NAME."""
    from shengtu.accounts.service import get_user_by_name, issue_token

    settings = _settings()

    async def job(db: Database) -> str:
        async with db.read() as session:
            user = await get_user_by_name(session, name)
        return issue_token(settings, user)[0]

    typer.echo(_with_db(settings, job))


@app.command()
def demo() -> None:
    """Make sure the demo user exists with points, and print its token; on a database
    without an admin, make the demo operator ``admin`` and print its password once. With
    the sandbox upstream, also add the demo's OpenAI-protocol models to the catalog, and
    a sandbox payment method (易支付, served by its double) with a few top-up tiers."""
    from sqlalchemy import select

    from shengtu.accounts.service import create_user, get_user_by_name, issue_token
    from shengtu.catalog.demo import add_demo_models
    from shengtu.channels.secrets import KeyBox
    from shengtu.errors import NotFound
    from shengtu.models.accounts import User
    from shengtu.payments.demo import add_sandbox_payment

    settings = _settings()

    async def job(db: Database) -> tuple[str, str | None, str | None]:
        password = admin_password = None
        if settings.sandbox_enabled:
            await add_demo_models(db)
            await add_sandbox_payment(db, KeyBox(settings.resolved_secret_key()), settings)
        try:
            async with db.read() as session:
                user = await get_user_by_name(session, DEMO_USER)
        except NotFound:
            password = secrets.token_urlsafe(12)
            user = await create_user(db, DEMO_USER, password, points_amount=DEMO_POINTS)
        async with db.read() as session:
            has_admin = await session.scalar(select(User.id).where(User.role == "admin").limit(1))
        if has_admin is None:
            admin_password = secrets.token_urlsafe(12)
            await create_user(db, DEMO_ADMIN, admin_password, admin=True)
        return issue_token(settings, user)[0], password, admin_password

    jwt_token, password, admin_password = _with_db(settings, job)
    base = settings.resolved_public_base_url
    typer.echo("")
    typer.secho("Shengtu 演示用户 demo", bold=True)
    if password:
        typer.echo(f"  密码:   {password}   (只显示这一次)")
    typer.echo(f"  Token:  {jwt_token}")
    typer.echo(f"  控制台: {base}/console/ (用户名 demo 登录,或粘贴上面的 Token)")
    typer.echo(f'  试一试: export YOUR_JWT_TOKEN="{jwt_token}"')
    typer.echo(f"  运营后台: {base}/console/admin")
    if admin_password:
        typer.echo(f"    管理员 {DEMO_ADMIN},密码 {admin_password}   (只显示这一次)")
    typer.echo("")


@app.command()
def audit(
    grace: Annotated[
        float, typer.Option(help="seconds past a deadline before a task is stuck")
    ] = 120.0,
) -> None:
    """Check every ledger invariant against the database; exit 1 on any violation."""
    from shengtu.ledger_audit.service import audit as run_audit

    async def job(db: Database) -> bool:
        async with db.snapshot() as session:
            checks = await run_audit(session, utcnow() - timedelta(seconds=grace))
        ok = True
        for check in checks:
            mark = "通过" if check.ok else "违反"
            typer.echo(
                f"[{mark}] {check.name}: 检查 {check.checked} 项, 违反 {len(check.violations)}"
            )
            for line in check.violations[:20]:
                typer.echo(f"    - {line}")
            ok = ok and check.ok
        typer.echo("账本审计通过" if ok else "账本审计失败")
        return ok

    if not _with_db(_settings(), job):
        raise typer.Exit(1)


def main() -> None:
    # Everything Shengtu writes (the database, its journal, secrets, stored files) is its
    # own: not readable by the machine's other users.
    os.umask(0o077)
    app()
