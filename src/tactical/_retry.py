"""Re-running an application service when optimistic concurrency refused its commit."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tactical._errors import ConcurrencyError

__all__ = ["retry_on_conflict"]

T = TypeVar("T")

_log = logging.getLogger("tactical.retry")


def retry_on_conflict(
    operation: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.005,
    max_delay: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; if it raises :class:`ConcurrencyError`, run it again, a bounded number of times.

    ``operation`` must be a whole transaction: open the unit of work, load the aggregate,
    run the command, commit. Each retry therefore re-loads fresh state and re-runs the
    command against it, so the business rules are checked again (a retried withdrawal can
    still be refused for insufficient funds). Between attempts it sleeps a random time up to
    an exponentially growing bound ("full jitter"), so competing writers spread out.

    Example::

        def approve(claim_id: UUID) -> None:
            with uow:
                uow.repository(InsurancePolicy).require(policy_id).approve_claim(claim_id)
                uow.commit()

        retry_on_conflict(lambda: approve(claim_id), attempts=5)

    Only :class:`ConcurrencyError` is retried: domain errors and every other exception
    propagate at once.

    Args:
        operation: The transaction to run; its return value is returned.
        attempts: How many times to run it at most (>= 1).
        base_delay: Upper bound in seconds of the first pause; doubles on each retry.
        max_delay: Upper bound in seconds of any pause.
        sleep: How to pause (injectable for tests and event loops).

    Returns:
        What ``operation`` returned on its first successful run.

    Raises:
        ConcurrencyError: Every attempt conflicted; the last error is raised, with a note
            saying how many attempts were made.
        ValueError: ``attempts`` is less than 1, or a delay is negative.

    .. versionadded:: 0.1.0
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    if base_delay < 0 or max_delay < 0:
        raise ValueError(f"delays must not be negative, got {base_delay=} and {max_delay=}")
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except ConcurrencyError as error:
            if attempt == attempts:
                error.add_note(f"gave up after {attempts} attempts (retry_on_conflict)")
                raise
            bound = min(max_delay, base_delay * 2 ** (attempt - 1))
            _log.debug("attempt %d of %d conflicted (%s); retrying", attempt, attempts, error)
            # Jitter only spreads competing writers apart: no security role.
            sleep(random.uniform(0, bound))  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover
