"""Jittered exponential backoff: how long to pause before the next try (no I/O, no clock)."""

from __future__ import annotations

__all__ = ["backoff_bound", "jittered_delay"]


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
