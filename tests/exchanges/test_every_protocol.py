"""Every protocol's calls are kept as exchanges with no trace of the key: a Bearer key, an
``x-key``, an ``x-goog-api-key``, a Kling JWT's access key and secret, 即梦's HMAC
signature and its access key. Against each protocol's double, served in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import pytest

from shengtu.providers.base import UpstreamJob
from shengtu.providers.exchanges import ExchangeLog, recording
from shengtu.providers.registry import PROTOCOLS
from shengtu.runner import running_sandbox
from tests.support import SANDBOX_SCALE

MODELS = {
    "suchuang": ("image_gpt", {"size": "1:1"}),
    "openai_images": ("gpt-image-1", {}),
    "replicate": ("black-forest-labs/flux-schnell", {}),
    "volcengine_ark": ("doubao-seedream-4-0-250828", {}),
    "gemini": ("gemini-2.5-flash-image", {}),
    "jimeng": ("jimeng_t2i_v31", {}),
    "dashscope": ("wanx2.1-t2i-turbo", {}),
    "kling": ("kling-v1-5", {}),
    "bfl": ("flux-pro-1.1", {}),
}


def test_every_protocol_is_named_here() -> None:
    assert set(MODELS) == set(PROTOCOLS)


@pytest.mark.parametrize("protocol", sorted(MODELS))
def test_a_protocols_exchanges_hold_no_key(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    upstream_model, params = MODELS[protocol]

    async def run() -> None:
        key = "sk-" + secrets.token_hex(16)
        async with running_sandbox("127.0.0.1", 0, key, 0.05, scale=SANDBOX_SCALE) as end:
            provider = spec.provider(end.base_url + spec.sandbox_path, spec.sandbox_key(key))
            book = ExchangeLog(body_bytes=16 * 1024)
            job = UpstreamJob(
                task_no="TASK-" + secrets.token_hex(4),
                upstream_model=upstream_model,
                params=params,
                prompt="一只猫",
            )
            try:
                with recording(book):
                    state = await provider.submit(job)
                    if provider.polls and state.phase != "succeeded":
                        await asyncio.sleep(0.3)
                        await provider.poll(state.upstream_id, job.task_no)
            finally:
                await provider.aclose()
        assert book.exchanges, protocol
        for exchange in book.exchanges:
            kept = repr(dataclasses.asdict(exchange))
            assert key not in kept, (protocol, exchange)
            for name, value in exchange.request_headers.items():
                if name.lower() in ("authorization", "x-key", "x-goog-api-key"):
                    assert "***" in value and len(value) < 40, (protocol, name, value)

    asyncio.run(run())
