from __future__ import annotations

from pydantic import BaseModel


class ModelOut(BaseModel):
    modelName: str
    description: str
    pointsCost: int
    taskType: str
    aspectRatio: str | None
