"""A clock that tests move by hand, instead of sleeping."""

import threading
from datetime import UTC, datetime, timedelta

from tactical._codec_values import show

__all__ = ["MovableClock"]

_START = datetime(2025, 1, 1, tzinfo=UTC)


class MovableClock:
    """A :class:`~tactical.Clock` that stands still until a test moves it.

    Give it to a timer worker (or to your own code that reads a clock) and call
    :meth:`advance` to make time pass: a timer due in 30 days fires on the next round after
    ``clock.advance(timedelta(days=30))``, with no sleeping. Safe to read from a worker's
    thread while the test moves it.

    Args:
        start: The time it shows first (timezone-aware); 2025-01-01 00:00 UTC if omitted.

    Raises:
        ValueError: ``start`` is naive.
        TypeError: ``start`` is not a datetime.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, start: datetime = _START) -> None:
        self._lock = threading.Lock()
        self._now = _aware(start)

    def now(self) -> datetime:
        """The time it shows, in UTC."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta``; return the new time.

        Raises:
            ValueError: ``delta`` is negative (use :meth:`set` to go back on purpose).
            TypeError: ``delta`` is not a timedelta.
        """
        candidate: object = delta
        if not isinstance(candidate, timedelta):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"advance() takes a timedelta, got {show(candidate)}")
        if delta < timedelta(0):
            raise ValueError(f"advance() moves forward only, got {delta!r}; use set() to go back")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Show ``when`` from now on (forward or back).

        Raises:
            ValueError: ``when`` is naive.
            TypeError: ``when`` is not a datetime.
        """
        when = _aware(when)
        with self._lock:
            self._now = when

    def __repr__(self) -> str:
        return f"MovableClock({self.now().isoformat()})"


def _aware(when: object) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"a MovableClock shows a datetime, got {show(when)}")
    if when.utcoffset() is None:
        raise ValueError(f"a MovableClock needs a timezone-aware datetime, got {when.isoformat()}")
    return when.astimezone(UTC)
