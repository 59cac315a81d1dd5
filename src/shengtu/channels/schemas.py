from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody
from shengtu.providers.registry import DEFAULT_PROTOCOL, ProtocolName

UncertainPolicy = Literal["fail", "retry"]


class ChannelModelIn(RequestBody):
    modelName: str = Field(min_length=1, max_length=64)
    upstreamModel: str = Field(min_length=1, max_length=64)
    upstreamParams: dict[str, Any] = Field(default_factory=dict)
    # How this upstream spells the model's choices, where it differs from the model's own:
    # per choice {"upstream": field, "map": {value: spelling}} (shengtu.pricing.parameters).
    paramMap: dict[str, Any] = Field(default_factory=dict)
    # How the channel's costPerPicture follows the choices: a price rule's shape
    # (shengtu.pricing.rules), its base the channel's costPerPicture. Empty: flat.
    costRule: dict[str, Any] = Field(default_factory=dict)


class ChannelSettings(RequestBody):
    """What an admin may change on a channel (every field optional on update)."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    baseUrl: str | None = Field(default=None, min_length=1, max_length=512)
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    weight: int | None = Field(default=None, ge=1, le=1000)
    keyRps: float | None = Field(default=None, gt=0, le=100_000)
    keyInflight: int | None = Field(default=None, ge=0, le=100_000)
    timeoutSeconds: float | None = Field(default=None, gt=0, le=3600)
    costPerPicture: Decimal | None = Field(default=None, ge=0, le=100_000, decimal_places=4)
    uncertainSubmit: UncertainPolicy | None = None
    enabled: bool | None = None
    # Keys to add, and ids of keys to remove; models replace the channel's list when given.
    addKeys: list[str] = Field(default_factory=list, max_length=100)
    removeKeyIds: list[int] = Field(default_factory=list, max_length=100)
    models: list[ChannelModelIn] | None = Field(default=None, max_length=500)


class ChannelCreate(ChannelSettings):
    name: str = Field(min_length=1, max_length=64)
    protocol: ProtocolName = DEFAULT_PROTOCOL
    baseUrl: str = Field(min_length=1, max_length=512)
    models: list[ChannelModelIn] = Field(min_length=1, max_length=500)


class WindowStats(BaseModel):
    """Tries at handing tasks upstream over a window (refusals of a task's content are
    not the upstream's failures and are left out of the rate)."""

    attempts: int
    accepted: int
    failed: int
    uncertain: int
    successRate: float | None  # accepted ÷ (accepted + failed + uncertain); None: no tries
    p50Ms: float | None
    p95Ms: float | None


class ChannelKeyOut(BaseModel):
    id: int
    key: str  # masked: …abcd
    enabled: bool
    disabledReason: str | None
    # closed: in use; open: skipped until openUntil; probe: its cool-down is over, and
    # the next task to it is the probe that closes or reopens it.
    breaker: Literal["closed", "open", "probe"]
    consecutiveFailures: int
    openUntil: str | None
    lastError: str | None
    lastErrorTime: str | None
    lastHour: WindowStats
    lastDay: WindowStats


class ChannelOut(BaseModel):
    id: int
    name: str
    protocol: str
    baseUrl: str
    priority: int
    weight: int
    keyRps: float
    keyInflight: int
    timeoutSeconds: float
    costPerPicture: str
    uncertainSubmit: str
    uncertainCount: int
    lateCount: int  # pictures its upstream delivered after their tasks had failed
    enabled: bool
    keys: list[ChannelKeyOut]
    models: list[ChannelModelIn]
    lastHour: WindowStats
    lastDay: WindowStats
    createTime: str
    updateTime: str


class ChannelTestOut(BaseModel):
    ok: bool
    latencyMs: float
    message: str


class AttemptOut(BaseModel):
    channelId: int | None
    channelName: str | None
    keyId: int | None
    outcome: str
    httpStatus: int | None
    latencyMs: float
    error: str | None
    startTime: str
    endTime: str
