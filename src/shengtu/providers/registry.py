"""The one table of protocols, and the providers of the embedded default (built from the
settings)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from shengtu.config import Settings
from shengtu.providers.base import Cancellable, Provider
from shengtu.providers.bfl import BflProvider
from shengtu.providers.dashscope import DashScopeProvider
from shengtu.providers.gemini import GeminiProvider
from shengtu.providers.http import HttpUpstream
from shengtu.providers.jimeng import JimengProvider
from shengtu.providers.kling import KlingProvider
from shengtu.providers.openai_images import OpenAIImagesProvider
from shengtu.providers.pacing import Pacing
from shengtu.providers.replicate import ReplicateProvider
from shengtu.providers.suchuang import SuChuangProvider
from shengtu.providers.volcengine_ark import VolcengineArkProvider

# The protocols a channel may speak: the keys of PROTOCOLS, spelled out for the API's
# schema (tests/providers/test_protocols.py checks the two agree).
ProtocolName = Literal[
    "suchuang",
    "openai_images",
    "replicate",
    "volcengine_ark",
    "gemini",
    "jimeng",
    "dashscope",
    "kling",
    "bfl",
]
# The protocol of the upstream the settings name (SHENGTU_SUCHUANG_*), and of a channel
# made without one.
DEFAULT_PROTOCOL: ProtocolName = "suchuang"


@dataclass(frozen=True)
class ProtocolSpec:
    """Everything the rest of Shengtu knows of a protocol."""

    provider: type[HttpUpstream]
    # A new channel's upstream timeout when its operator sets none (None: the channel's
    # default, 30 s).
    default_timeout: float | None = None
    # Where the sandbox serves this protocol's double, below its base URL (its ``prefix``).
    sandbox_path: str = ""
    # Its key is a pair, ``ACCESS_KEY:SECRET_KEY``, that signs each request (即梦's HMAC,
    # Kling's JWT): the sandbox's own key ``k`` (no colon) stands for ``k:k`` there.
    key_pair: bool = False
    # A new channel's ``keyInflight`` when its operator sets none (None: no cap), for an
    # upstream that refuses a key's tasks beyond a number running at once.
    default_key_inflight: int | None = None

    def sandbox_key(self, key: str) -> str:
        """The key a provider of this protocol uses for the sandbox's key ``key``."""
        return f"{key}:{key}" if self.key_pair and ":" not in key else key

    @property
    def cancellable(self) -> bool:
        """Whether the upstream can stop a job it accepted (the provider has ``cancel``)."""
        return issubclass(self.provider, Cancellable)


PROTOCOLS: dict[str, ProtocolSpec] = {
    "suchuang": ProtocolSpec(SuChuangProvider),
    # It answers when the picture is done: minutes, not seconds.
    "openai_images": ProtocolSpec(OpenAIImagesProvider, default_timeout=300.0),
    "replicate": ProtocolSpec(ReplicateProvider),
    # Seedream answers when the pictures are done: a set of 4K pictures takes minutes.
    "volcengine_ark": ProtocolSpec(VolcengineArkProvider, default_timeout=600.0),
    # It answers with the picture too; gemini-3-pro-image at 4K takes a minute or more.
    "gemini": ProtocolSpec(GeminiProvider, default_timeout=300.0),
    # Volcengine's visual API is one path for every action: its double has a prefix.
    "jimeng": ProtocolSpec(JimengProvider, sandbox_path="/jimeng", key_pair=True),
    "dashscope": ProtocolSpec(DashScopeProvider),
    "kling": ProtocolSpec(KlingProvider, sandbox_path="/kling", key_pair=True),
    # BFL answers 429 beyond 24 active tasks per key; its paths (``/v1/{model}``) would
    # take any other protocol's ``/v1/...`` in the sandbox.
    "bfl": ProtocolSpec(BflProvider, sandbox_path="/bfl", default_key_inflight=24),
}


def cancellable(protocol: str) -> bool:
    spec = PROTOCOLS.get(protocol)
    return spec is not None and spec.cancellable


@dataclass(frozen=True)
class SandboxEndpoint:
    base_url: str
    api_key: str


def sandbox_key(settings: Settings) -> str:
    """Stable across restarts, so tasks submitted before one can still be polled after."""
    secret = settings.resolved_jwt_secret().encode()
    return "sbx-" + hmac.new(secret, b"shengtu-sandbox", hashlib.sha256).hexdigest()[:32]


def build_providers(
    settings: Settings, sandbox: SandboxEndpoint | None, pacing: Pacing | None = None
) -> dict[str, Provider]:
    pacing = pacing or Pacing()
    if settings.suchuang_api_key:
        key = settings.suchuang_api_key
        provider = PROTOCOLS[DEFAULT_PROTOCOL].provider(
            settings.suchuang_base_url,
            key,
            timeout=settings.upstream_timeout,
            pacer=pacing.pacer(key, settings.upstream_rps),
        )
        return {DEFAULT_PROTOCOL: provider}
    if sandbox is None:
        return {}
    # The sandbox has a double of every protocol: the demo's models of each (gpt-image-1,
    # flux-schnell …). The default protocol paces on the bare key, as a channel with that
    # key does; the others each on a pace of their own.
    return {
        name: spec.provider(
            sandbox.base_url + spec.sandbox_path,
            spec.sandbox_key(sandbox.api_key),
            timeout=settings.upstream_timeout,
            pacer=pacing.pacer(
                sandbox.api_key if name == DEFAULT_PROTOCOL else f"{name}:{sandbox.api_key}",
                settings.upstream_rps,
            ),
        )
        for name, spec in PROTOCOLS.items()
    }
