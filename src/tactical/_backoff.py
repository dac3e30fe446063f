"""Jittered exponential backoff: how long to pause before the next try (no I/O, no clock)."""

from __future__ import annotations

__all__ = ["backoff_bound", "check_loop_waits", "jittered_delay"]


def backoff_bound(retry: int, base_delay: float, max_delay: float) -> float:
    """The upper bound of the pause before retry number ``retry`` (1 for the first retry).

    ``base_delay`` doubled for each retry after the first, capped at ``max_delay``.
    """
    if retry > 64:  # 2**64 * any sensible base is past every cap; avoid float overflow
        return max_delay
    return min(max_delay, base_delay * 2.0 ** (retry - 1))


def jittered_delay(retry: int, base_delay: float, max_delay: float, fraction: float) -> float:
    """The pause before retry number ``retry``: ``fraction`` (in [0, 1)) of its bound.

    "Full jitter": a uniformly random fraction of the exponential bound, so writers that
    conflicted together spread apart instead of colliding again in step.
    """
    return fraction * backoff_bound(retry, base_delay, max_delay)


def check_loop_waits(
    idle_name: str, idle: float, initial_backoff: float, max_backoff: float
) -> None:
    """Refuse the waits of a worker's loop that would make it spin or never retry.

    Raises:
        ValueError: ``idle`` (named ``idle_name``), ``initial_backoff`` or ``max_backoff``
            is not positive (``max_backoff`` below ``initial_backoff`` caps every pause).
    """
    if not idle > 0:
        raise ValueError(f"{idle_name} must be positive, got {idle!r}")
    if not initial_backoff > 0:
        raise ValueError(f"initial_backoff must be positive, got {initial_backoff!r}")
    if not max_backoff > 0:
        raise ValueError(f"max_backoff must be positive, got {max_backoff!r}")
