"""Time as a dependency: the domain asks a clock, so tests fix the date instead of today."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Protocol


class Clock(Protocol):
    """Tells the current time (timezone-aware) to commands that depend on it."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """The real clock: UTC now."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that always tells the same instant, for tests and reproducible scenarios."""

    def __init__(self, at: datetime) -> None:
        if at.utcoffset() is None:
            raise ValueError(f"FixedClock needs a timezone-aware datetime, got {at.isoformat()}")
        self.at = at

    def now(self) -> datetime:
        """The fixed instant."""
        return self.at

    def advance_to(self, at: datetime) -> None:
        """Move the clock (never backwards)."""
        if at < self.at:
            raise ValueError(f"FixedClock cannot go back from {self.at} to {at}")
        self.at = at


SYSTEM_CLOCK: Clock = SystemClock()


def today(clock: Clock) -> date:
    """The clock's current date in UTC."""
    return clock.now().astimezone(UTC).date()
