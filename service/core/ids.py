"""Public ids: a kind prefix and 24 random letters and digits (``ftjob-…``, ``file-…``)."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_ID_BODY = re.compile(r"^[A-Za-z0-9]{1,64}$")

TEAM = "team"
API_KEY = "key"
FILE = "file"
JOB = "ftjob"
CHECKPOINT = "ftckpt"
EVENT = "ftevent"
WEBHOOK = "whep"
UPLOAD = "upload"
UPLOAD_PART = "part"
WEBHOOK_MESSAGE = "msg"


def new_id(prefix: str) -> str:
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def is_id(prefix: str, value: str) -> bool:
    """True when ``value`` has the shape of an id of this kind; anything else cannot be stored."""
    head, sep, body = value.partition("-")
    return sep == "-" and head == prefix and bool(_ID_BODY.match(body))
