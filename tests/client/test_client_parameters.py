"""The SDK asks for a model's choices and several pictures, quotes before it buys, and reads
what a task delivered and gave back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

import pytest

from shengtu.client import AsyncClient, Client, ShengtuAPIError
from tests.client.test_client import api_key
from tests.openai_compat.test_openai_model_parameters import add_demo_catalog
from tests.support import Platform


def test_the_sdk_quotes_and_generates_with_parameters_and_n(
    own_platform: Callable[..., Platform],
) -> None:
    platform = own_platform()
    add_demo_catalog(platform)
    with platform:
        sandbox, key = platform.sandbox_upstream("sk-" + secrets.token_hex(12))
        platform.add_channel(
            protocol="openai_images",
            name="OpenAI",
            baseUrl=sandbox,
            addKeys=[key],
            models=[{"modelName": "gpt-image-1", "upstreamModel": "gpt-image-1"}],
        )
        user = platform.new_user(points=500)
        choice = {"size": "1536x1024", "quality": "high"}
        with Client(platform.url, api_key(user)) as client:
            quote = client.quote("gpt-image-1", parameters=choice, n=2)
            assert (quote.each, quote.total, quote.balance) == (240, 480, 500)
            assert quote.affordable and quote.parameters["quality"] == "high"
            task = client.generate(
                "gpt-image-1", "[sandbox:fewer] 宽幅雪山", parameters=choice, n=2
            )
            assert (task.status, task.pictures, task.delivered) == ("completed", 2, 1)
            assert task.points_cost == 480 and task.points_refunded == 240
            assert task.result_urls == (task.result_url,)
            assert task.parameters is not None and task.parameters["size"] == "1536x1024"
            assert client.balance().balance == 500 - 240
            with pytest.raises(ShengtuAPIError) as refused:
                client.quote("gpt-image-1", parameters={"size": "640x480"})
            assert refused.value.code == 400 and "1536x1024" in refused.value.message

        async def in_async() -> None:
            async with AsyncClient(platform.url, api_key(user)) as client:
                quote = await client.quote("gpt-image-1", parameters={"quality": "low"}, n=3)
                assert (quote.each, quote.total) == (10, 30)
                task = await client.generate(
                    "gpt-image-1", "三只猫", parameters={"quality": "low"}, n=3
                )
                assert task.delivered == 3 and len(task.result_urls) == 3

        asyncio.run(in_async())
        assert user.balance() == 500 - 240 - 30
        platform.audit()
