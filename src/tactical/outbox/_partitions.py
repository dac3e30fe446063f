"""Partitions: re-exported from :mod:`tactical._partitions`, which the unit of work uses too.

The hash lives outside :mod:`tactical.outbox` so that the SQL unit of work can write each
outbox row's partition key without importing the relay and its consumers.
"""

from __future__ import annotations

from tactical._partitions import partition_key, partition_of

__all__ = ["partition_key", "partition_of"]
