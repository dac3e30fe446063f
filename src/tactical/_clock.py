"""The clock: where tactical reads the current time, injectable so that tests move time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Something that tells the current time, as a timezone-aware datetime.

    Timer workers read it to decide which scheduled messages are due. Pass
    :class:`SystemClock` (the default) in production and
    :class:`tactical.testing.MovableClock` in tests, which move it instead of sleeping.

    .. versionadded:: 0.2.0
    """

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The computer's clock, in UTC.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"
