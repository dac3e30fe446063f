"""What a partitioned relay decides without touching a connection: its leases' statements.

A partitioned relay (``partitions=N`` on PostgreSQL) owns some of the outbox's N partitions
through rows of ``tactical_relay_leases`` (one per partition: its owner and when its lease
expires) and says it is alive through its row of ``tactical_relays`` (a heartbeat). Every
statement here is built with SQLAlchemy, its values bound parameters, and reads the time
from the database (``clock_timestamp()``), so that relays on hosts whose clocks differ
agree on when a lease expires.

Every statement that locks lease rows picks them with ``FOR UPDATE SKIP LOCKED``: a relay
never waits for another's batch, it skips the rows that relay holds and tries again at its
next batch.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql

import sqlalchemy as sa
from tactical.sqlalchemy._schema import outbox_table, relay_leases_table, relays_table

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_PARTITIONS",
    "LeaseStatements",
    "check_partitioned",
    "fair_share",
    "fill_key_statement",
    "keepalive_settings",
    "unkeyed_aggregates",
]

DEFAULT_PARTITIONS: int = 16
"""The number of outbox partitions a relay is advised to use (``partitions=16``).

Sixteen lets up to sixteen relays share the outbox, and two to four share it evenly
enough; more partitions cost each batch a longer ``IN`` list and each relay more lease rows.

.. versionadded:: 0.2.0
"""

DEFAULT_LEASE_TTL: float = 10.0
"""Seconds a partitioned relay's lease on a partition lasts unless renewed (at every batch).

A relay killed without a clean stop has its partitions taken over by the others within
``lease_ttl`` plus one ``idle_interval`` (``max(lease_ttl, 2)`` when its host vanished
mid-batch: the server notices through TCP keepalives scaled to the lease).

.. versionadded:: 0.2.0
"""

_EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)  # a released lease: claimable at once
_l = relay_leases_table
_r = relays_table
_o = outbox_table


def default_name() -> str:
    """A relay name unique to this relay object: host, process id and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def check_partitioned(
    partitions: int | None, lease_ttl: float, name: str | None, dialect: str
) -> str | None:
    """Validate the partitioned settings of a relay; its name (None when not partitioned).

    Raises:
        TypeError: ``partitions`` is not an ``int``.
        ValueError: ``partitions`` is below 1, ``lease_ttl`` not positive, ``name`` empty
            or longer than 255 characters, or the database is not PostgreSQL.
    """
    if partitions is None:
        return None
    if isinstance(partitions, bool) or not isinstance(partitions, int):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"partitions must be an int, got {type(partitions).__name__}: {partitions!r}"
        )
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    if dialect != "postgresql":
        raise ValueError(
            f"partitions={partitions} needs PostgreSQL: on {dialect} run one relay per "
            "database, without partitions (its outbox has one writer at a time anyway)"
        )
    if not lease_ttl > 0:
        raise ValueError(f"lease_ttl must be positive, got {lease_ttl}")
    name = default_name() if name is None else name
    if not name or len(name) > 255:
        raise ValueError(f"a relay's name must have 1 to 255 characters, got {name!r}")
    return name


def fair_share(partitions: int, relays: int) -> int:
    """The most partitions one of ``relays`` live relays keeps: N / relays, rounded up."""
    return math.ceil(partitions / max(relays, 1))


def unkeyed_aggregates(limit: int) -> sa.Select[*tuple[Any, ...]]:
    """Aggregates with unpublished rows written without a partition key (an older writer)."""
    return (
        sa.select(_o.c.aggregate_type, _o.c.aggregate_id)
        .where(_o.c.partition_key.is_(None), _o.c.published_at.is_(None))
        .distinct()
        .limit(limit)
    )


def fill_key_statement(aggregate_type: str, aggregate_id: str, key: int) -> sa.Update:
    """The update that gives an aggregate's unkeyed rows their partition key."""
    return (
        _o.update()
        .where(
            _o.c.aggregate_type == aggregate_type,
            _o.c.aggregate_id == aggregate_id,
            _o.c.partition_key.is_(None),
            _o.c.published_at.is_(None),
        )
        .values(partition_key=key)
    )


def keepalive_settings(lease_ttl: float) -> dict[str, str]:
    """The server-side TCP settings of a partitioned relay's batch, scaled to ``lease_ttl``.

    A relay that dies with its host (power, network) leaves its batch's transaction open
    on the server, holding its lease rows locked, until PostgreSQL notices that the client
    is gone: by default after hours of TCP keepalive. With these settings the server probes
    an idle socket after half a lease, once a second, and gives up after about one lease
    (at least 2 s), or when data it sent stays unacknowledged for one lease: the
    transaction rolls back and the leases can be taken once they expire. A relay that is
    alive answers the probes from its kernel, however slow its publish. (A SIGKILLed
    process on a host that lives on is noticed at once: its kernel closes the socket.)
    """
    half = max(1, math.floor(lease_ttl / 2))
    return {
        "tcp_keepalives_idle": str(half),
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": str(half),
        "tcp_user_timeout": str(max(1000, math.ceil(lease_ttl * 1000))),
    }


def _now() -> sa.ColumnElement[Any]:
    # The database's clock at each statement (now() would be the transaction's start).
    return sa.func.clock_timestamp()


class LeaseStatements:
    """The statements of one partitioned relay (its name, partition count and lease TTL)."""

    def __init__(self, name: str, partitions: int, lease_ttl: float) -> None:
        self.name, self.partitions = name, partitions
        self._ttl = sa.literal(timedelta(seconds=lease_ttl), sa.Interval())
        self._keepalives = keepalive_settings(lease_ttl)

    def keepalives(self) -> sa.Select[*tuple[Any, ...]]:
        """Set :func:`keepalive_settings` for the current transaction (``set_config`` local)."""
        return sa.select(
            *(
                sa.func.set_config(setting, value, sa.true())
                for setting, value in self._keepalives.items()
            )
        )

    def _expiry(self) -> sa.ColumnElement[Any]:
        return _now() + self._ttl

    def existing_leases(self) -> sa.Select[*tuple[Any, ...]]:
        """The partitions that have a lease row."""
        return sa.select(_l.c.partition).where(_l.c.partition < self.partitions)

    def create_leases(self, partitions: Collection[int]) -> sa.Executable:
        """Insert unowned lease rows for ``partitions`` (which had none).

        Only missing rows are inserted: an insert that meets a row another relay's batch
        has locked would wait for that batch.
        """
        rows = [{"partition": p, "owner": None, "expires_at": _EXPIRED} for p in sorted(partitions)]
        return postgresql.insert(_l).values(rows).on_conflict_do_nothing()

    def forget_dead_relays(self) -> sa.Executable:
        """Delete the heartbeats of relays dead for more than one TTL (none is waited for)."""
        dead = (
            sa.select(_r.c.name)
            .where(_r.c.expires_at < _now() - self._ttl)
            .with_for_update(skip_locked=True)
        )
        return _r.delete().where(_r.c.name.in_(dead.scalar_subquery()))

    def heartbeat(self) -> sa.Executable:
        """Say this relay is alive, with its partition count, for one more TTL."""
        insert = postgresql.insert(_r).values(
            name=self.name, partitions=self.partitions, expires_at=self._expiry()
        )
        return insert.on_conflict_do_update(
            index_elements=[_r.c.name],
            set_={
                "partitions": insert.excluded.partitions,
                "expires_at": insert.excluded.expires_at,
            },
        )

    def live_relays(self) -> sa.Select[*tuple[Any, ...]]:
        """The name and partition count of every relay alive now (this one included)."""
        return sa.select(_r.c.name, _r.c.partitions).where(_r.c.expires_at > _now())

    def _mine(self, *, live: bool) -> sa.ScalarSelect[int]:
        alive = _l.c.expires_at > _now() if live else sa.true()
        return (
            sa.select(_l.c.partition)
            .where(_l.c.owner == self.name, _l.c.partition < self.partitions, alive)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    def renew(self) -> sa.Executable:
        """Extend this relay's live leases by one TTL; returns their partitions.

        The rows stay locked until the transaction ends: no other relay can take them
        while this one publishes from them.
        """
        return (
            _l.update()
            .where(_l.c.partition.in_(self._mine(live=True)))
            .values(expires_at=self._expiry())
            .returning(_l.c.partition)
        )

    def claim(self, count: int) -> sa.Executable:
        """Take up to ``count`` partitions whose lease expired; returns their partitions."""
        free = (
            sa.select(_l.c.partition)
            .where(_l.c.partition < self.partitions, _l.c.expires_at <= _now())
            .order_by(_l.c.partition)
            .limit(count)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return (
            _l.update()
            .where(_l.c.partition.in_(free))
            .values(owner=self.name, expires_at=self._expiry())
            .returning(_l.c.partition)
        )

    def release(self, partitions: Collection[int] | None = None) -> sa.Executable:
        """Give up these partitions (all of this relay's when None): claimable at once."""
        update = _l.update().where(_l.c.partition.in_(self._mine(live=False)))
        if partitions is not None:
            update = update.where(_l.c.partition.in_(sorted(partitions)))
        return update.values(owner=None, expires_at=_EXPIRED)

    def leave(self) -> sa.Executable:
        """Delete this relay's heartbeat: the others count it out at once."""
        return _r.delete().where(_r.c.name == self.name)

    def rows_of(
        self, eligible: sa.Select[*tuple[Any, ...]], owned: Sequence[int]
    ) -> sa.Select[*tuple[Any, ...]]:
        """``eligible`` restricted to the owned partitions, behind any unkeyed earlier row.

        A row written without a partition key (by an older unit of work) belongs to no
        partition until a relay gives it one: the later rows of its aggregate wait for it,
        so that the aggregate's order holds across the upgrade. The probe reads the partial
        index of unkeyed rows, empty once every writer writes the key.
        """
        unkeyed = _o.alias("unkeyed")
        return eligible.where(
            (_o.c.partition_key % self.partitions).in_(sorted(owned)),
            ~sa.exists().where(
                unkeyed.c.partition_key.is_(None),
                unkeyed.c.published_at.is_(None),
                unkeyed.c.aggregate_type == _o.c.aggregate_type,
                unkeyed.c.aggregate_id == _o.c.aggregate_id,
                unkeyed.c.position < _o.c.position,
            ),
        )
