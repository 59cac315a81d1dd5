"""Everything a request or the worker needs, built once per process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shengtu.catalog.service import Catalog
from shengtu.config import Settings
from shengtu.db import Database
from shengtu.events.bus import EventBus
from shengtu.providers.base import Provider
from shengtu.storage.base import Storage
from shengtu.storage.local import LocalStorage


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: Storage
    bus: EventBus
    catalog: Catalog
    providers: dict[str, Provider] = field(default_factory=dict)
    # Set on submit so an in-process worker starts at once instead of at its next tick.
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def build(cls, settings: Settings, providers: dict[str, Provider] | None = None) -> AppContext:
        db = Database(settings.resolved_database_url)
        storage = LocalStorage(settings.data_dir / "files", settings.resolved_public_base_url)
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            bus=EventBus(),
            catalog=Catalog(db),
            providers=providers or {},
        )

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.db.dispose()
