"""Time as a dependency: the domain asks a clock, so tests move the date instead of today.

The clock is tactical's :class:`~tactical.Clock` protocol (anything with ``now()``
returning a timezone-aware datetime): the same clock drives the policy's rules and the
timer worker that fires its expiry, so a test moves one
:class:`tactical.testing.MovableClock` and both see the new date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from tactical import Clock, SystemClock

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "start_of", "today"]

SYSTEM_CLOCK: Clock = SystemClock()
"""The real clock (UTC now): the default of every command that depends on time."""


def today(clock: Clock) -> date:
    """The clock's current date in UTC."""
    return clock.now().astimezone(UTC).date()


def start_of(day: date) -> datetime:
    """The first instant of ``day`` in UTC: when a period ending on ``day`` is over."""
    return datetime.combine(day, time(0), tzinfo=UTC)
