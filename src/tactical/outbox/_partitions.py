"""Partitions: a stable split of the outbox's events by aggregate, kept in order within each."""

from __future__ import annotations

import zlib

__all__ = ["partition_key", "partition_of"]


def partition_key(aggregate_type: str, aggregate_id: str) -> int:
    """The stable 31-bit hash of an aggregate that decides its partition.

    The same aggregate has the same key in every process, on every Python version and
    platform (CRC-32 of its type name and id, as UTF-8, with a unit separator between them;
    Python's own ``hash`` of a string changes from one process to the next). Every event of
    one aggregate therefore lands in one partition, whatever the number of partitions, so
    per-aggregate order can be kept while partitions are handled in parallel.

    Args:
        aggregate_type: The codec's type name of the aggregate (``OutboxMessage.aggregate_type``).
        aggregate_id: The aggregate's id as text (``OutboxMessage.aggregate_id``).

    Returns:
        A key from 0 to 2**31 - 1, small enough for a 32-bit signed column.

    .. versionadded:: 0.2.0
    """
    data = aggregate_type.encode() + b"\x1f" + aggregate_id.encode()
    return zlib.crc32(data) & 0x7FFF_FFFF


def partition_of(aggregate_type: str, aggregate_id: str, partitions: int) -> int:
    """The partition, from 0 to ``partitions - 1``, that an aggregate's events belong to.

    Args:
        aggregate_type: The codec's type name of the aggregate.
        aggregate_id: The aggregate's id as text.
        partitions: How many partitions there are (at least 1).

    Returns:
        ``partition_key(aggregate_type, aggregate_id) % partitions``.

    Raises:
        ValueError: ``partitions`` is below 1.
        TypeError: ``partitions`` is not an ``int`` (a ``bool`` is refused too).

    .. versionadded:: 0.2.0
    """
    # Checked at run time too: the count often comes from configuration (text).
    if isinstance(partitions, bool) or not isinstance(partitions, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"partitions must be an int, got {type(partitions).__name__}: {partitions!r}"
        )
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return partition_key(aggregate_type, aggregate_id) % partitions
