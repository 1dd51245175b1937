"""Field types shared by the domain's request models and the HTTP schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# Printable text: control characters (NUL above all, which PostgreSQL refuses) are a 400, not a 500.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=PRINTABLE)
]
