"""The sandbox upstream: an HTTP server that speaks every protocol of the registry and
draws real PNGs. One double per protocol (a module each, named in ``DOUBLES``) over the
shared parts in ``common``: the state, the ``[sandbox:...]`` faults, the pictures, the key
check, the results."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from shengtu.providers.sandbox.bfl import BflDouble
from shengtu.providers.sandbox.common import (
    DIRECTIVES,
    SIZES,
    Double,
    SandboxState,
    Shared,
    delivered,
    draw_png,
    job_count,
    new_job_id,
    parse_directive,
    parse_job_id,
    parse_picture_id,
    picture_id,
)
from shengtu.providers.sandbox.dashscope import DashScopeDouble
from shengtu.providers.sandbox.gemini import GeminiDouble
from shengtu.providers.sandbox.jimeng import JimengDouble
from shengtu.providers.sandbox.kling import KlingDouble
from shengtu.providers.sandbox.openai_images import OpenAIImagesDouble
from shengtu.providers.sandbox.replicate import ReplicateDouble
from shengtu.providers.sandbox.suchuang import SuChuangDouble
from shengtu.providers.sandbox.volcengine_ark import VolcengineArkDouble

# Each protocol of providers/registry.py's PROTOCOLS, and its double
# (tests/providers/test_protocols.py checks they agree).
DOUBLES: dict[str, type[Double]] = {
    "suchuang": SuChuangDouble,
    "openai_images": OpenAIImagesDouble,
    "replicate": ReplicateDouble,
    "volcengine_ark": VolcengineArkDouble,
    "gemini": GeminiDouble,
    "jimeng": JimengDouble,
    "dashscope": DashScopeDouble,
    "kling": KlingDouble,
    "bfl": BflDouble,
}


def create_sandbox_app(state: SandboxState, extra: Sequence[BaseRoute] = ()) -> Starlette:
    """Every double's routes and the shared ones, in one router (one 404, one 405);
    ``extra``: other doubles' routes served beside them (``make run``'s payment double)."""
    doubles = [double(state) for double in DOUBLES.values()]
    mounted = [Mount(d.prefix, routes=d.routes()) for d in doubles if d.prefix]
    routes = [route for d in doubles if not d.prefix for route in d.routes()]
    return Starlette(routes=[*mounted, *extra, *routes, *Shared(state).routes()])


__all__ = [
    "DIRECTIVES",
    "DOUBLES",
    "SIZES",
    "SandboxState",
    "create_sandbox_app",
    "delivered",
    "draw_png",
    "job_count",
    "new_job_id",
    "parse_directive",
    "parse_job_id",
    "parse_picture_id",
    "picture_id",
]
