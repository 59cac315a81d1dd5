"""Which provider serves a catalog row, built from the settings."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shengtu.config import Settings
from shengtu.providers.base import Provider
from shengtu.providers.openai_images import OpenAIImagesProvider
from shengtu.providers.pacing import Pacing
from shengtu.providers.replicate import ReplicateProvider
from shengtu.providers.suchuang import SuChuangProvider


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
    providers: dict[str, Provider] = {}
    if settings.suchuang_api_key:
        base_url, key = settings.suchuang_base_url, settings.suchuang_api_key
    elif sandbox is not None:
        base_url, key = sandbox.base_url, sandbox.api_key
        # The sandbox speaks the OpenAI Images API and Replicate's too: the demo's
        # gpt-image-1 and flux-schnell models.
        providers["openai_images"] = OpenAIImagesProvider(
            sandbox.base_url,
            sandbox.api_key,
            timeout=settings.upstream_timeout,
            pacer=pacing.pacer("openai:" + sandbox.api_key, settings.upstream_rps),
        )
        providers["replicate"] = ReplicateProvider(
            sandbox.base_url,
            sandbox.api_key,
            timeout=settings.upstream_timeout,
            pacer=pacing.pacer("replicate:" + sandbox.api_key, settings.upstream_rps),
        )
    else:
        return {}
    providers["suchuang"] = SuChuangProvider(
        base_url,
        key,
        timeout=settings.upstream_timeout,
        pacer=pacing.pacer(key, settings.upstream_rps),
    )
    return providers
