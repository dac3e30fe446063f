"""How an aggregate's id is kept as a storage key, and which ids no store can hold.

Every tactical store refuses the same ids: the SQL unit of work because its ``aggregate_id``
columns cannot hold them, the in-memory one so that it never accepts what SQL refuses.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tactical._codec_values import show, unstorable_text, uuid_text

__all__ = ["MAX_KEY_LENGTH", "id_key", "stored_key", "unstorable_key"]

MAX_KEY_LENGTH = 255
"""The length of tactical's ``String(255)`` ``aggregate_id`` columns, in characters."""


def id_key(aggregate_id: object) -> str:
    """The text an id is stored as: UUIDs, ints and strings all have an unambiguous str()."""
    if type(aggregate_id) is str:
        return aggregate_id
    return uuid_text(aggregate_id) if type(aggregate_id) is UUID else str(aggregate_id)


def unstorable_key(key: str) -> str | None:
    """Why no aggregate_id column can hold ``key`` (an id as text), or None."""
    if len(key) <= MAX_KEY_LENGTH and key.isascii() and "\x00" not in key:
        return None  # the common case (a UUID, an int), decided at once
    if len(key) > MAX_KEY_LENGTH:
        return (
            f"{show(key)} is {len(key)} characters as text, over the {MAX_KEY_LENGTH} "
            "of tactical's aggregate_id columns"
        )
    return unstorable_text(key)


def stored_key(aggregate_type: type[Any], aggregate_id: object) -> str:
    """The key ``aggregate_id`` is stored under.

    Raises:
        ValueError: No aggregate_id column can hold the id (see :func:`unstorable_key`).
    """
    key = id_key(aggregate_id)
    reason = unstorable_key(key)
    if reason is not None:
        raise ValueError(f"cannot store {aggregate_type.__qualname__}: its id {reason}")
    return key
