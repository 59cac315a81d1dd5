"""The sandbox upstream (for now all in ``common``; split per protocol next)."""

from __future__ import annotations

from shengtu.providers.sandbox.common import (
    SIZES,
    SandboxState,
    create_sandbox_app,
    draw_png,
    new_job_id,
    parse_directive,
    parse_job_id,
)

__all__ = [
    "SIZES",
    "SandboxState",
    "create_sandbox_app",
    "draw_png",
    "new_job_id",
    "parse_directive",
    "parse_job_id",
]
