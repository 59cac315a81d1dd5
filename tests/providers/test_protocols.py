"""The one table of protocols (providers/registry.py) says all the rest needs to know."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from shengtu.providers.base import Cancellable
from shengtu.providers.dashscope import DashScopeProvider
from shengtu.providers.registry import DEFAULT_PROTOCOL, PROTOCOLS, ProtocolName, cancellable
from shengtu.providers.replicate import ReplicateProvider
from shengtu.providers.sandbox import DOUBLES, SandboxState


def test_the_api_schema_names_exactly_the_protocols_of_the_table() -> None:
    assert set(get_args(ProtocolName)) == set(PROTOCOLS)
    assert DEFAULT_PROTOCOL in PROTOCOLS


def test_a_protocol_is_cancellable_when_its_provider_can_cancel() -> None:
    assert [name for name in PROTOCOLS if cancellable(name)] == ["replicate", "dashscope"]
    assert issubclass(ReplicateProvider, Cancellable)
    assert issubclass(DashScopeProvider, Cancellable)
    assert not cancellable("no-such-protocol")


def test_only_channels_answered_with_the_picture_wait_minutes_by_default() -> None:
    defaults = {name: spec.default_timeout for name, spec in PROTOCOLS.items()}
    assert defaults == {
        "suchuang": None,
        "openai_images": 300.0,
        "replicate": None,
        "volcengine_ark": 600.0,
        "gemini": 300.0,
        "jimeng": None,
        "dashscope": None,
        "kling": None,
        "bfl": None,
    }
    # Those that answer with the picture are those that do not poll.
    assert {name for name, spec in PROTOCOLS.items() if not spec.provider.polls} == {
        "openai_images",
        "volcengine_ark",
        "gemini",
    }


def test_the_sandbox_has_a_double_of_every_protocol() -> None:
    assert set(DOUBLES) == set(PROTOCOLS)


def test_each_double_is_served_where_its_protocol_says() -> None:
    state = SandboxState("sbx-right", latency=0.0)
    for name, double in DOUBLES.items():
        assert double(state).prefix == PROTOCOLS[name].sandbox_path, name


@pytest.mark.parametrize("protocol", list(DOUBLES))
def test_every_route_of_a_double_refuses_a_wrong_key(protocol: str) -> None:
    state = SandboxState("sbx-right", latency=0.0)
    double = DOUBLES[protocol](state)
    routes = double.routes()
    # The protocol's own status for a wrong key (401 for most; Gemini's is 400).
    refused = double.refused().status_code
    client = TestClient(Starlette(routes=routes))
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "wrong"}):
                answer = client.request(method, path, params={"key": "wrong"}, headers=headers)
                assert answer.status_code == refused, (method, path, headers)
    assert state.submits == 0 and state.polls == 0
