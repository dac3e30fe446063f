"""Durable timers, the part without I/O: scheduled messages and what a transaction asks for.

A unit of work collects the timers a transaction schedules and cancels (:class:`TimerRequests`,
one per block); at commit its storage writes their net effect in the same transaction as
the aggregates (:meth:`TimerRequests.writes`): a schedule stores (or replaces) the row of its
key, a cancel deletes it. What fires them is storage's own (the SQL timer worker, or
:meth:`tactical.InMemoryStore.take_due`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeAlias

from tactical._codec_values import show, unstorable_text
from tactical._model import DomainEvent

__all__ = [
    "HELD_TIMERS",
    "MAX_TIMER_KEY_LENGTH",
    "Cancel",
    "ScheduledMessage",
    "TimerRequests",
    "TimerWrite",
    "discard_timer_requests",
    "timer_writes_of",
]

MAX_TIMER_KEY_LENGTH: Final = 255
"""The length of ``tactical_scheduled.key``, in characters."""

HELD_TIMERS: Final = "_tactical_timer_requests"
"""Where an aggregate (a process manager) keeps its TimerRequests, in its ``__dict__``."""


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    """A message stored to be published at ``due_at``, under ``key``.

    Attributes:
        key: What names the timer: scheduling again under it replaces the message,
            cancelling it deletes the message.
        message: The event to publish when it is due, as it was scheduled (its
            ``event_id`` and ``occurred_at`` included).
        due_at: When it becomes due (timezone-aware, UTC).

    .. versionadded:: 0.2.0
    """

    key: str
    message: DomainEvent
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Cancel:
    """Delete the timer ``key``, if it is still stored."""

    key: str


TimerWrite: TypeAlias = ScheduledMessage | Cancel
"""What a commit writes for one key: store (replace) its message, or delete it."""


def timer_key(key: object) -> str:
    """``key`` checked as a timer key.

    Raises:
        TypeError: ``key`` is not a string.
        ValueError: It is empty, longer than 255 characters, or holds text no database
            column carries (a NUL, a lone surrogate).
    """
    if not isinstance(key, str):
        raise TypeError(f"a timer key must be a str, got {show(key)}")
    if not key:
        raise ValueError("a timer key must not be empty")
    if len(key) > MAX_TIMER_KEY_LENGTH:
        raise ValueError(
            f"timer key {show(key[:40])}... is {len(key)} characters, over the "
            f"{MAX_TIMER_KEY_LENGTH} of tactical_scheduled.key"
        )
    reason = unstorable_text(key)
    if reason is not None:
        raise ValueError(f"timer key {reason}")
    return key


def due_time(at: object) -> datetime:
    """``at`` checked as a due time, in UTC.

    Raises:
        TypeError: ``at`` is not a datetime.
        ValueError: ``at`` is naive (its time zone unknown), or has no UTC time (its offset
            takes it before year 1 or after year 9999).
    """
    if not isinstance(at, datetime):
        raise TypeError(f"a timer's due time must be a datetime, got {show(at)}")
    if at.utcoffset() is None:
        raise ValueError(
            f"a timer's due time must be timezone-aware, got the naive {at.isoformat()}"
        )
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"a timer's due time must have a UTC time between years 1 and 9999, got "
            f"{at.isoformat()}"
        ) from None


class TimerRequests:
    """The timers one transaction schedules and cancels, by key; the last request wins."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[str, TimerWrite] = {}

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def schedule(self, message: DomainEvent, at: datetime, key: str | None) -> str:
        """Ask for ``message`` to be published at ``at`` under ``key``; returns the key.

        Raises:
            TypeError: ``message`` is not a :class:`~tactical.DomainEvent`, ``at`` not a
                datetime, or ``key`` not a string.
            ValueError: ``at`` is naive, or ``key`` cannot be stored.
        """
        candidate: object = message
        if not isinstance(candidate, DomainEvent):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"schedule() takes a DomainEvent to publish, got {show(candidate)}")
        due_at = due_time(at)
        key = timer_key(str(message.event_id) if key is None else key)
        self._by_key.pop(key, None)  # replaced: it moves to the end, in request order
        self._by_key[key] = ScheduledMessage(key, message, due_at)
        return key

    def cancel(self, key: str) -> None:
        """Ask for the timer ``key`` to be deleted (a timer scheduled earlier in the block too).

        Raises:
            TypeError: ``key`` is not a string.
            ValueError: ``key`` cannot be stored.
        """
        key = timer_key(key)
        self._by_key.pop(key, None)
        self._by_key[key] = Cancel(key)

    def extend(self, writes: tuple[TimerWrite, ...]) -> None:
        """Take ``writes`` (another transaction part's, already checked) after these."""
        for write in writes:
            self._by_key.pop(write.key, None)
            self._by_key[write.key] = write

    def writes(self) -> tuple[TimerWrite, ...]:
        """What the commit writes, one per key, in the order last requested."""
        return tuple(self._by_key.values())


def timer_writes_of(aggregate: object) -> tuple[TimerWrite, ...]:
    """The timer requests ``aggregate`` holds (a process manager's), for the commit."""
    requests: TimerRequests | None = vars(aggregate).get(HELD_TIMERS)
    return () if requests is None else requests.writes()


def discard_timer_requests(aggregate: object) -> None:
    """Forget the timer requests ``aggregate`` holds: its commit wrote them, or a rollback."""
    state = vars(aggregate)
    if HELD_TIMERS in state:
        del state[HELD_TIMERS]
