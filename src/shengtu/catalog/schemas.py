from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody


def _empty(value: Any) -> bool:
    return not value


class ModelOut(BaseModel):
    modelName: str
    description: str
    pointsCost: int
    taskType: str
    aspectRatio: str | None
    # Extensions of the spec: the values the model offers (``shengtu.pricing.parameters``)
    # and how its price follows them (``shengtu.pricing.rules``). Left out of the answer
    # when empty: the spec's models, one price with nothing to choose, answer exactly as
    # the spec shows them.
    parameters: dict[str, Any] | None = Field(default=None, exclude_if=_empty)
    priceRule: dict[str, Any] | None = Field(default=None, exclude_if=_empty)


TaskType = Literal["text_to_image", "image_to_image", "both"]
_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ModelChange(RequestBody):
    """What an admin may change on a catalog model (every field optional)."""

    description: str | None = Field(default=None, min_length=1, max_length=255)
    pointsCost: int | None = Field(default=None, ge=0, le=1_000_000)
    # ``both``: one model for text-to-image and image-to-image (a reference image decides).
    taskType: TaskType | None = None
    aspectRatio: str | None = Field(default=None, max_length=16)
    upstreamModel: str | None = Field(default=None, min_length=1, max_length=64)
    upstreamParams: dict[str, Any] | None = None
    enabled: bool | None = None
    sortOrder: int | None = Field(default=None, ge=-100_000, le=100_000)
    # The values offered and the price rule (their shapes: docs/channels.md, "The
    # catalog"); ``{}`` clears one. Checked together: a rule may price only what is offered.
    parameters: dict[str, Any] | None = None
    priceRule: dict[str, Any] | None = None


class ModelCreate(ModelChange):
    modelName: str = Field(pattern=_MODEL_NAME)
    description: str = Field(min_length=1, max_length=255)
    pointsCost: int = Field(ge=0, le=1_000_000)
    taskType: TaskType = "text_to_image"
    upstreamModel: str = Field(min_length=1, max_length=64)


class ModelAdminOut(ModelOut):
    provider: str
    upstreamModel: str
    upstreamParams: dict[str, Any]
    enabled: bool
    sortOrder: int
    # The operator sees both always, ``{}`` when empty.
    parameters: dict[str, Any] | None = Field(default_factory=dict)
    priceRule: dict[str, Any] | None = Field(default_factory=dict)
