"""What an inbox consumer does after a failed attempt: retry, park or give up (no I/O).

Shared by the sync consumer and, later, the async one: they only execute the decision.
"""

from __future__ import annotations

import dataclasses
import enum

from tactical._backoff import jittered_delay
from tactical._errors import ConcurrencyError
from tactical.sqlalchemy._engine import says_sqlite_locked

__all__ = ["AttemptFailed", "InboxRetries", "Next", "is_transient"]

# SQLSTATEs of PostgreSQL's transient refusals: serialization_failure, deadlock_detected.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` says "not now" rather than "never": a conflict or a lock wait.

    A :class:`~tactical.ConcurrencyError` (another transaction changed the aggregate), SQLite's
    "database is locked" (the write lock stayed taken), and PostgreSQL's serialization
    failures and deadlocks: running the message again later can succeed, so none of them is
    the message's fault.
    """
    if isinstance(error, ConcurrencyError):
        return True
    driver_error = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's
    if getattr(driver_error, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    return type(driver_error).__name__ == "OperationalError" and says_sqlite_locked(
        str(driver_error)
    )


class Next(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"
    """Try again after :attr:`AttemptFailed.delay` seconds."""
    PARK = "park"
    """The message failed too often: park it with its error."""
    GIVE_UP = "give up"
    """Transient failures went on too long: raise, leaving the message with the broker."""


@dataclasses.dataclass(frozen=True)
class AttemptFailed:
    """The decision after a failed attempt."""

    next: Next
    delay: float
    transient: bool
    failures: int
    """How many attempts failed for a reason of the message's own (what parking counts)."""


@dataclasses.dataclass
class InboxRetries:
    """The retry state of one message: counts failures and transient refusals apart.

    A failure (the handler raised) counts toward ``max_attempts``, after which the message
    is parked; pauses are ``retry_delay`` doubled per failure. A transient refusal
    (:func:`is_transient`) never counts toward parking: it is retried after a jittered,
    exponentially growing pause (``conflict_delay`` doubling up to ``conflict_max_delay``)
    up to ``conflict_attempts`` times in a row, then the consumer gives up on the delivery
    (raises) so the broker redelivers it later.
    """

    max_attempts: int
    retry_delay: float
    conflict_attempts: int
    conflict_delay: float
    conflict_max_delay: float
    failures: int = 0
    conflicts: int = 0

    def after(self, error: BaseException, jitter: float) -> AttemptFailed:
        """Record a failed attempt with ``error``; ``jitter`` is a uniform random in [0, 1)."""
        if is_transient(error):
            self.conflicts += 1
            if self.conflicts >= self.conflict_attempts:
                return AttemptFailed(Next.GIVE_UP, 0.0, True, self.failures)
            delay = jittered_delay(
                self.conflicts, self.conflict_delay, self.conflict_max_delay, jitter
            )
            return AttemptFailed(Next.RETRY, delay, True, self.failures)
        self.conflicts = 0
        self.failures += 1
        if self.failures >= self.max_attempts:
            return AttemptFailed(Next.PARK, 0.0, False, self.failures)
        delay = self.retry_delay * 2 ** (self.failures - 1)
        return AttemptFailed(Next.RETRY, delay, False, self.failures)
