"""Types shared by the domains' request and response schemas."""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, StringConstraints

# Printable text: control characters (NUL above all, which PostgreSQL refuses) are a 400, not a 500.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=PRINTABLE)
]

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
