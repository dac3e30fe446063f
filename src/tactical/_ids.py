"""Time-ordered ids (UUIDv7, RFC 9562) for the events tactical creates.

An event id is a key of the outbox's unique index (and of consumers' inboxes): random ids
(uuid4) put every insert on a random page of that index, time-ordered ones on its last
page, which stays in the database's cache and is written once per many inserts. Python
3.14 has ``uuid.uuid7``; tactical runs on 3.11, so it makes its own.
"""

from __future__ import annotations

import os
import threading
from time import time_ns
from uuid import UUID

__all__ = ["uuid7"]

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_COUNTER_MAX = (1 << 42) - 1
_lock = threading.Lock()


def _new_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy held for good.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)
# The last id's millisecond and 42-bit counter: ids made in one millisecond (or after the
# clock stepped back) continue the counter, so that each is greater than the one before.
_last_ms = -1
_last_counter = 0


def uuid7() -> UUID:
    """A new UUID version 7: 48 bits of Unix time in ms, a 42-bit counter, 32 random bits.

    Increasing within a process (RFC 9562's method 1, "fixed bit-length dedicated
    counter"): a new millisecond seeds the counter with random bits below its top one,
    so that it has room to count up; later ids in the same millisecond add one to it, and
    every id ends in 32 fresh random bits. Should the wall clock go back, the ids keep
    counting from the last millisecond seen rather than going back with it.
    """
    global _last_ms, _last_counter
    ms = time_ns() // 1_000_000
    with _lock:
        if ms > _last_ms:
            seed = int.from_bytes(os.urandom(10))
            counter, tail = seed >> 39, seed & 0xFFFF_FFFF  # 41 random bits: top bit 0
        else:
            ms, counter = _last_ms, _last_counter + 1
            if counter > _COUNTER_MAX:  # 2**41 ids in one millisecond: borrow the next one
                ms, counter = ms + 1, int.from_bytes(os.urandom(6)) >> 7
            tail = int.from_bytes(os.urandom(4))
        _last_ms, _last_counter = ms, counter
    return UUID(
        int=(ms & 0xFFFF_FFFF_FFFF) << 80
        | (counter >> 30) << 64
        | (counter & 0x3FFF_FFFF) << 32
        | tail
        | _VERSION_AND_VARIANT
    )
