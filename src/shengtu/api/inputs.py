"""The base of every request body: strings that no database can store are refused here.

PostgreSQL refuses a NUL byte in text and MySQL and SQLite would keep it silently; either
way it is never a meaningful character in a name, a prompt or a URL, so it stops at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ValidationInfo, field_validator


def contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


class RequestBody(BaseModel):
    @field_validator("*")
    @classmethod
    def _refuse_nul(cls, value: Any, info: ValidationInfo) -> Any:
        if contains_nul(value):
            raise ValueError(f"参数 {info.field_name} 含有非法字符(NUL)")
        return value


def given_columns(body: BaseModel, columns: Mapping[str, str]) -> dict[str, Any]:
    """``{column: value}`` for the fields of ``body`` named in ``columns`` that it gives
    (not None): what a create sets, or an update changes."""
    return {
        column: getattr(body, name)
        for name, column in columns.items()
        if getattr(body, name) is not None
    }


# A row id in a path: ids are 63-bit on every database; a larger number is simply no id
# of ours (a 404, not an overflow in the driver).
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
