from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody


class ModelOut(BaseModel):
    modelName: str
    description: str
    pointsCost: int
    taskType: str
    aspectRatio: str | None


TaskType = Literal["text_to_image", "image_to_image"]
_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ModelChange(RequestBody):
    """What an admin may change on a catalog model (every field optional)."""

    description: str | None = Field(default=None, min_length=1, max_length=255)
    pointsCost: int | None = Field(default=None, ge=0, le=1_000_000)
    taskType: TaskType | None = None
    aspectRatio: str | None = Field(default=None, max_length=16)
    upstreamModel: str | None = Field(default=None, min_length=1, max_length=64)
    upstreamParams: dict[str, Any] | None = None
    enabled: bool | None = None
    sortOrder: int | None = Field(default=None, ge=-100_000, le=100_000)


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
