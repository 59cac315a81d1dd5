"""How a process's :class:`~shengtu.context.AppContext` is put together from the settings:
the one place that picks the storage, the bus and the upstreams' pacing."""

from __future__ import annotations

from typing import Literal

from shengtu.api.clientaddr import ClientAddresses, parse_networks
from shengtu.auth.authenticator import Authenticator
from shengtu.auth.limits import RequestLimits
from shengtu.auth.security import configure_hashing, hash_gate
from shengtu.catalog.service import Catalog
from shengtu.channels.pool import ChannelPool
from shengtu.channels.secrets import KeyBox
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.db import Database
from shengtu.events.bus import EventBus
from shengtu.events.redis_bus import RedisEventBus
from shengtu.gates import Gate
from shengtu.moderation.service import Moderation, build_moderator
from shengtu.netguard import Resolver
from shengtu.payments.methods import PaymentGateways
from shengtu.providers.base import Provider
from shengtu.providers.pacing import Pacing
from shengtu.safety.service import PromptCheck
from shengtu.storage.base import Storage
from shengtu.storage.local import LocalStorage
from shengtu.storage.s3 import S3Storage


def build_context(
    settings: Settings,
    providers: dict[str, Provider] | None = None,
    *,
    role: Literal["all", "api", "worker"] = "all",
    pacing: Pacing | None = None,
) -> AppContext:
    """``role``: which messages this process listens to (API: events; worker: wake-ups)."""
    db = Database(settings.resolved_database_url, settings.db_pool_size, settings.db_pool_overflow)
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
    return AppContext(
        settings=settings,
        db=db,
        storage=storage,
        bus=bus,
        catalog=Catalog(db),
        limits=RequestLimits(settings),
        auth=Authenticator(db, settings.resolved_jwt_secret()),
        hashing=hash_gate(settings.password_hash_concurrency, settings.password_hash_wait_seconds),
        decoding=Gate(
            settings.image_decode_concurrency, 30.0, "服务器繁忙(图片处理排队过长),请稍后再试"
        ),
        resolver=Resolver(settings.resolver_threads, settings.resolver_queue),
        clients=ClientAddresses(parse_networks(settings.trusted_proxies)),
        key_box=key_box,
        channels=ChannelPool(db, key_box, pacing=pacing),
        prompt_check=PromptCheck(db, settings.safety_strikes),
        payments=PaymentGateways(key_box),
        moderation=Moderation(
            db, settings, build_moderator(settings), settings.resolved_secret_key()
        ),
        pacing=pacing,
        providers=providers or {},
    )
