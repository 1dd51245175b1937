"""The list and deletion shapes every domain's responses share (OpenAI's)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item")


class ListPage(BaseModel, Generic[Item]):
    """OpenAI's list shape: ``{"object": "list", "data": [...], "has_more": ...}``."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, items: list[Item], has_more: bool, ids: list[str]) -> ListPage[Item]:
        return cls(
            data=items,
            has_more=has_more,
            first_id=ids[0] if ids else None,
            last_id=ids[-1] if ids else None,
        )


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
