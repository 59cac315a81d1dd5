"""``shengtu channel …``: the admin API's channel operations, from the command line.

Its imports wait for a channel command: every ``shengtu`` command loads this module, and
the channels' service pulls in the providers and the ORM (over a second)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from shengtu.config import Settings, get_settings
from shengtu.db import Database
from shengtu.errors import ShengtuError
from shengtu.logs import configure_logging
from shengtu.providers.registry import DEFAULT_PROTOCOL

if TYPE_CHECKING:
    from shengtu.channels.schemas import ChannelModelIn, ChannelOut, ChannelTestOut
    from shengtu.channels.secrets import KeyBox

channel_app = typer.Typer(help="Upstream channels: accounts and keys tasks are routed to.")
T = TypeVar("T")


def _run(job: Callable[[Database, KeyBox, Settings], Awaitable[T]]) -> T:
    from shengtu.channels.secrets import KeyBox

    settings = get_settings()
    configure_logging(settings)

    async def run() -> T:
        db = Database(settings.resolved_database_url, pool_size=2)
        try:
            return await job(db, KeyBox(settings.resolved_secret_key()), settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except (ShengtuError, ValueError) as exc:
        typer.secho(f"错误: {getattr(exc, 'message', exc)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def _line(c: ChannelOut) -> str:
    state = "启用" if c.enabled else "停用"
    keys = ", ".join(f"#{k.id} {k.key}{'' if k.enabled else ' 停用'}" for k in c.keys)
    return (
        f"{c.id}\t{c.name}\t{c.protocol}\t{state}\t优先级 {c.priority} 权重 {c.weight}\t"
        f"{len(c.models)} 个模型\t密钥: {keys}"
    )


def _model(text: str) -> ChannelModelIn:
    """``NAME`` or ``NAME=UPSTREAM_MODEL`` or ``NAME=UPSTREAM_MODEL:{json params}``."""
    from shengtu.channels.schemas import ChannelModelIn

    name, _, upstream = text.partition("=")
    upstream_model, _, params = upstream.partition(":")
    return ChannelModelIn(
        modelName=name,
        upstreamModel=upstream_model or name,
        upstreamParams=json.loads(params) if params else {},
    )


@channel_app.command("add")
def channel_add(
    name: Annotated[str, typer.Option(help="a name of its own")],
    base_url: Annotated[str, typer.Option("--base-url")],
    key: Annotated[list[str], typer.Option("--key", help="an upstream key (repeatable)")],
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help='a catalog model: NAME, NAME=UPSTREAM or NAME=UPSTREAM:{"size":"1:1"}',
        ),
    ],
    protocol: Annotated[str, typer.Option()] = DEFAULT_PROTOCOL,
    priority: Annotated[int, typer.Option()] = 0,
    weight: Annotated[int, typer.Option()] = 1,
    key_rps: Annotated[float, typer.Option("--key-rps")] = 15.0,
    key_inflight: Annotated[
        int | None,
        typer.Option("--key-inflight", help="0: no cap; unset: the protocol's default (bfl: 24)"),
    ] = None,
    timeout: Annotated[float, typer.Option()] = 30.0,
    cost: Annotated[str, typer.Option(help="the operator's cost per picture")] = "0",
    uncertain: Annotated[str, typer.Option(help="fail | retry")] = "fail",
) -> None:
    """Add a channel; its keys are stored sealed and shown masked."""
    from shengtu.channels import service
    from shengtu.channels.schemas import ChannelCreate

    body = ChannelCreate.model_validate(
        {
            "name": name,
            "protocol": protocol,
            "baseUrl": base_url,
            "addKeys": key,
            "models": [_model(m).model_dump() for m in model],
            "priority": priority,
            "weight": weight,
            "keyRps": key_rps,
            "keyInflight": key_inflight,
            "timeoutSeconds": timeout,
            "costPerPicture": cost,
            "uncertainSubmit": uncertain,
        }
    )

    async def job(db: Database, box: KeyBox, settings: Settings) -> str:
        async with db.write() as session:
            channel = await service.create(session, box, body)
            return _line(await service.describe(session, channel, settings.timezone))

    typer.echo(_run(job))


@channel_app.command("list")
def channel_list() -> None:
    from shengtu.channels import service

    async def job(db: Database, box: KeyBox, settings: Settings) -> list[str]:
        async with db.read() as session:
            return [
                _line(await service.describe(session, c, settings.timezone))
                for c in await service.list_channels(session)
            ]

    for line in _run(job):
        typer.echo(line)


@channel_app.command("show")
def channel_show(channel_id: int) -> None:
    from shengtu.channels import service

    async def job(db: Database, box: KeyBox, settings: Settings) -> str:
        async with db.read() as session:
            channel = await service.get_channel(session, channel_id)
            out = await service.describe(session, channel, settings.timezone)
        return json.dumps(out.model_dump(), ensure_ascii=False, indent=2)

    typer.echo(_run(job))


def _set_enabled(channel_id: int, enabled: bool) -> None:
    from shengtu.channels import service
    from shengtu.channels.schemas import ChannelSettings

    async def job(db: Database, box: KeyBox, settings: Settings) -> str:
        async with db.write() as session:
            channel = await service.change(
                session, box, channel_id, ChannelSettings(enabled=enabled)
            )
            return _line(await service.describe(session, channel, settings.timezone))

    typer.echo(_run(job))


@channel_app.command("enable")
def channel_enable(channel_id: int) -> None:
    _set_enabled(channel_id, True)


@channel_app.command("disable")
def channel_disable(channel_id: int) -> None:
    _set_enabled(channel_id, False)


@channel_app.command("delete")
def channel_delete(channel_id: int) -> None:
    """Delete a channel with no task in flight (disable it first and let them end)."""
    from shengtu.channels import service

    async def job(db: Database, box: KeyBox, settings: Settings) -> str:
        async with db.write() as session:
            await service.remove(session, channel_id)
        return f"已删除渠道 {channel_id}"

    typer.echo(_run(job))


@channel_app.command("test")
def channel_test(channel_id: int) -> None:
    """Ask the upstream through the channel's first enabled key (no paid job)."""
    from shengtu.channels import service

    async def job(db: Database, box: KeyBox, settings: Settings) -> ChannelTestOut:
        return await service.probe(db, box, channel_id)

    result = _run(job)
    typer.echo(f"{result.message}({result.latencyMs} ms)")
    if not result.ok:
        raise typer.Exit(1)
