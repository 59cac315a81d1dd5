"""Everything a request or the worker needs, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request

from shengtu.accounts.limits import RequestLimits
from shengtu.accounts.security import configure_hashing
from shengtu.accounts.service import Authenticator, hash_gate
from shengtu.api.clientaddr import ClientAddresses, parse_networks
from shengtu.catalog.service import Catalog
from shengtu.channels.pool import ChannelPool
from shengtu.channels.secrets import KeyBox
from shengtu.config import Settings
from shengtu.db import Database
from shengtu.events.bus import EventBus
from shengtu.events.redis_bus import RedisEventBus
from shengtu.gates import Gate
from shengtu.netguard import Resolver
from shengtu.providers.base import Provider
from shengtu.providers.pacing import Pacing
from shengtu.storage.base import Storage
from shengtu.storage.local import LocalStorage
from shengtu.storage.s3 import S3Storage
from shengtu.tasks.handoff import Taker


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: Storage
    bus: EventBus
    catalog: Catalog
    limits: RequestLimits
    auth: Authenticator
    hashing: Gate
    decoding: Gate
    resolver: Resolver
    clients: ClientAddresses
    key_box: KeyBox
    channels: ChannelPool
    # The upstream of the settings (SHENGTU_SUCHUANG_*, or the sandbox) for models that
    # no channel serves.
    providers: dict[str, Provider] = field(default_factory=dict)
    # Upstream keys' pacing (shared through Redis when set); closed with the context.
    pacing: Pacing | None = None
    # This process's worker, when it runs one: new tasks go to it from the submit.
    taker: Taker | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        providers: dict[str, Provider] | None = None,
        *,
        role: Literal["all", "api", "worker"] = "all",
        pacing: Pacing | None = None,
    ) -> AppContext:
        """``role``: which messages this process listens to (API: events; worker: wake-ups)."""
        db = Database(
            settings.resolved_database_url, settings.db_pool_size, settings.db_pool_overflow
        )
        storage: Storage
        if settings.storage == "s3":
            storage = S3Storage(settings)
        else:
            storage = LocalStorage(settings.data_dir / "files", settings.resolved_public_base_url)
        key_box = KeyBox(settings.resolved_secret_key())
        configure_hashing(settings.password_hash_time_cost, settings.password_hash_memory_kib)
        bus: EventBus
        if settings.redis_url:
            bus = RedisEventBus(
                settings.redis_url,
                listen_events=role in ("all", "api"),
                listen_wakeups=role in ("all", "worker"),
            )
        else:
            bus = EventBus()
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            bus=bus,
            catalog=Catalog(db),
            limits=RequestLimits(settings),
            auth=Authenticator(db, settings.resolved_jwt_secret()),
            hashing=hash_gate(
                settings.password_hash_concurrency, settings.password_hash_wait_seconds
            ),
            decoding=Gate(
                settings.image_decode_concurrency, 30.0, "服务器繁忙(图片处理排队过长),请稍后再试"
            ),
            resolver=Resolver(settings.resolver_threads, settings.resolver_queue),
            clients=ClientAddresses(parse_networks(settings.trusted_proxies)),
            key_box=key_box,
            channels=ChannelPool(db, key_box, pacing=pacing),
            pacing=pacing,
            providers=providers or {},
        )

    async def start(self) -> None:
        await self.storage.start()
        await self.bus.start()

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.channels.aclose()
        if self.pacing is not None:
            await self.pacing.aclose()
        await self.bus.aclose()
        await self.storage.aclose()
        await self.auth.aclose()
        await self.limits.aclose()
        await self.db.dispose()
        self.resolver.close()


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain function dependency in a worker thread, per request.
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]
