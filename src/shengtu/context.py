"""Everything a request or the worker needs, built once per process (by
:func:`shengtu.assembly.build_context`).

The rooms' types are named for the type checker only: every router takes ``ContextDep``,
so a run-time import of a capability here would tie each capability to all the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from shengtu.api.clientaddr import ClientAddresses
    from shengtu.auth.authenticator import Authenticator
    from shengtu.auth.limits import RequestLimits
    from shengtu.catalog.service import Catalog
    from shengtu.channels.pool import ChannelPool
    from shengtu.channels.secrets import KeyBox
    from shengtu.config import Settings
    from shengtu.db import Database
    from shengtu.events.bus import EventBus
    from shengtu.gates import Gate
    from shengtu.moderation.service import Moderation
    from shengtu.netguard import Resolver
    from shengtu.payments.methods import PaymentGateways
    from shengtu.providers.base import Provider
    from shengtu.providers.pacing import Pacing
    from shengtu.safety.service import PromptCheck
    from shengtu.storage.base import Storage
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
    prompt_check: PromptCheck
    # The payment methods' providers and their HTTP client.
    payments: PaymentGateways
    # The moderation service's policy (its provider None unless the operator set one).
    moderation: Moderation
    # The upstream of the settings (SHENGTU_SUCHUANG_*, or the sandbox) for models that
    # no channel serves.
    providers: dict[str, Provider] = field(default_factory=dict)
    # Upstream keys' pacing (shared through Redis when set); closed with the context.
    pacing: Pacing | None = None
    # This process's worker, when it runs one: new tasks go to it from the submit.
    taker: Taker | None = None

    async def start(self) -> None:
        await self.storage.start()
        await self.bus.start()

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.channels.aclose()
        await self.payments.aclose()
        await self.moderation.aclose()
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
