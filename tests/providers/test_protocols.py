"""The one table of protocols (providers/registry.py) says all the rest needs to know."""

from __future__ import annotations

from typing import get_args

from shengtu.providers.base import Cancellable
from shengtu.providers.registry import DEFAULT_PROTOCOL, PROTOCOLS, ProtocolName, cancellable
from shengtu.providers.replicate import ReplicateProvider


def test_the_api_schema_names_exactly_the_protocols_of_the_table() -> None:
    assert set(get_args(ProtocolName)) == set(PROTOCOLS)
    assert DEFAULT_PROTOCOL in PROTOCOLS


def test_a_protocol_is_cancellable_when_its_provider_can_cancel() -> None:
    assert [name for name in PROTOCOLS if cancellable(name)] == ["replicate"]
    assert issubclass(ReplicateProvider, Cancellable)
    assert not cancellable("no-such-protocol")


def test_only_openai_images_channels_wait_minutes_by_default() -> None:
    defaults = {name: spec.default_timeout for name, spec in PROTOCOLS.items()}
    assert defaults == {"suchuang": None, "openai_images": 300.0, "replicate": None}
