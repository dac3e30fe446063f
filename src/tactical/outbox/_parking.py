"""What the relay decides without touching a connection: which rows to send, which to park.

The relay (and any later async or partitioned relay) only executes what these functions
decide: the statements they build and the plans they return. A row is *parked*
(``parked_at`` set, ``published_at`` NULL) when it can never be published: it cannot be
read, or its publisher refused it for good with an
:class:`~tactical.outbox.UndeliverableError`. It keeps its error in the outbox until it is
retried, and the later rows of its aggregate wait behind it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa
from tactical.outbox._message import OutboxMessage, UndeliverableError, stored_trace_context
from tactical.sqlalchemy._schema import outbox_table

__all__ = [
    "BatchPlan",
    "ParkedRow",
    "eligible_rows",
    "park_statement",
    "parked_row",
    "parked_rows",
    "plan_after_refusal",
    "plan_batch",
    "read_message",
    "retry_statement",
    "storable_error",
]

_ERROR_LIMIT = 2000

_o = outbox_table
_earlier_parked = outbox_table.alias("earlier_parked")

_COLUMNS = (
    _o.c.position,
    _o.c.event_id,
    _o.c.event_type,
    _o.c.event_version,
    _o.c.aggregate_type,
    _o.c.aggregate_id,
    _o.c.aggregate_version,
    _o.c.occurred_at,
    _o.c.correlation_id,
    _o.c.causation_id,
    _o.c.trace_context,
)


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """An outbox row the relay could never publish, kept with its error until retried.

    Its aggregate's later rows are not published while it is parked (they wait behind it);
    other aggregates' rows are.

    Attributes:
        position: The row's outbox position (its key).
        event_id: The event's id.
        event_type: The event's type name, as stored.
        aggregate_type: The type name of the aggregate that recorded the event.
        aggregate_id: The aggregate's id, as text.
        aggregate_version: The aggregate's version after the change that recorded it.
        parked_at: When the relay parked it.
        error: Why it could not be published.

    .. versionadded:: 0.2.0
    """

    position: int
    event_id: UUID
    event_type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    parked_at: datetime
    error: str


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What to do with one batch: the messages to publish, in order, and the rows to park.

    ``park`` maps positions to their error; ``held`` are positions left unpublished this
    time because an earlier row of their aggregate is parked now.
    """

    publish: tuple[OutboxMessage, ...]
    park: dict[int, str] = field(default_factory=dict[int, str])
    held: tuple[int, ...] = ()


def eligible_rows(batch_size: int, dialect: str) -> sa.Select[*tuple[Any, ...]]:
    """The oldest rows to publish: unpublished, not parked, no earlier parked row of theirs.

    The payload comes as raw bytes (SQLite) or text (PostgreSQL), so that one undecodable
    row cannot fail the fetch of the batch: :func:`read_message` decodes each row alone.
    The partial indexes on unpublished positions and on parked rows serve the query.
    """
    raw = sa.cast(_o.c.payload, sa.LargeBinary if dialect == "sqlite" else sa.Text)
    p = _earlier_parked
    return (
        sa.select(*_COLUMNS, raw.label("raw_payload"))
        .where(
            _o.c.published_at.is_(None),
            _o.c.parked_at.is_(None),
            ~sa.exists().where(
                p.c.parked_at.is_not(None),
                p.c.published_at.is_(None),
                p.c.aggregate_type == _o.c.aggregate_type,
                p.c.aggregate_id == _o.c.aggregate_id,
                p.c.position < _o.c.position,
            ),
        )
        .order_by(_o.c.position)
        .limit(batch_size)
    )


def read_message(row: sa.Row[Any]) -> OutboxMessage | str:
    """The message of a row from :func:`eligible_rows`, or why it cannot be read."""
    payload = read_payload(row.raw_payload)
    if isinstance(payload, str):
        return payload
    return _message(row, payload)


def read_payload(raw: object) -> dict[str, Any] | str:
    """A stored payload (JSON text or UTF-8 bytes) as a JSON object, or why it is not one."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not isinstance(text, str):
            return f"payload is not JSON text but {type(raw).__name__}"
        payload: object = json.loads(text)
    except UnicodeDecodeError as error:
        return f"payload is not UTF-8: {error}"
    except RecursionError:
        return "payload is nested deeper than Python's recursion limit"
    except ValueError as error:
        return f"payload is not JSON: {error}"
    if not isinstance(payload, dict):
        return f"payload is not a JSON object but {type(payload).__name__}"
    return cast("dict[str, Any]", payload)


def _message(row: sa.Row[Any], payload: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        position=row.position,
        event_id=row.event_id,
        event_type=row.event_type,
        event_version=row.event_version,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        aggregate_version=row.aggregate_version,
        payload=payload,
        occurred_at=row.occurred_at,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        **stored_trace_context(row.trace_context),
    )


def _aggregate(row: sa.Row[Any] | OutboxMessage) -> tuple[str, str]:
    return (row.aggregate_type, row.aggregate_id)


def _hold_back(messages: Iterable[OutboxMessage], park: dict[int, str]) -> BatchPlan:
    # ``messages`` and ``park`` come from one batch in position order: a message waits if
    # an earlier row of its aggregate is parked (its earlier rows still go out).
    first_parked: dict[tuple[str, str], int] = {}
    kept: list[OutboxMessage] = []
    for message in messages:
        if message.position in park:
            first_parked.setdefault(_aggregate(message), message.position)
        else:
            kept.append(message)
    publish: list[OutboxMessage] = []
    held: list[int] = []
    for message in kept:
        blocker = first_parked.get(_aggregate(message))
        if blocker is not None and blocker < message.position:
            held.append(message.position)
        else:
            publish.append(message)
    return BatchPlan(tuple(publish), park, tuple(held))


def plan_batch(rows: Sequence[sa.Row[Any]]) -> BatchPlan:
    """Park the rows that cannot be read; publish the others but those behind a parked one."""
    park: dict[int, str] = {}
    messages: list[OutboxMessage] = []
    for row in rows:
        read = read_message(row)
        if isinstance(read, str):
            park[row.position] = f"cannot be read: {read}"
            # A stand-in that carries the row's place and aggregate into _hold_back.
            messages.append(_message(row, {}))
        else:
            messages.append(read)
    return _hold_back(messages, park)


def plan_after_refusal(plan: BatchPlan, refusal: UndeliverableError) -> BatchPlan | None:
    """The plan once ``refusal`` named messages that can never be sent: park them, send the rest.

    Returns None when the refusal names no message of ``plan`` (a publisher breaking its
    contract): the relay then treats it as a transient failure rather than loop.
    """
    refused = {
        m.position: refusal.reasons[m.position]
        for m in plan.publish
        if m.position in refusal.reasons
    }
    if not refused:
        return None
    later = _hold_back(plan.publish, refused)
    return BatchPlan(later.publish, {**plan.park, **refused}, (*plan.held, *later.held))


def storable_error(error: str) -> str:
    """``error`` as a text column can hold it: no NUL, no lone surrogate, bounded."""
    # The error is stored as text: no NUL (PostgreSQL refuses it), no lone surrogate.
    text = error.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


def park_statement(park: dict[int, str], now: datetime) -> list[sa.Update]:
    """The updates that park each row of ``park`` with its error (unless published meanwhile)."""
    return [
        _o.update()
        .where(_o.c.position == position, _o.c.published_at.is_(None))
        .values(parked_at=now, error=storable_error(error))
        for position, error in park.items()
    ]


def parked_rows(aggregate: tuple[str, str] | None = None) -> sa.Select[*tuple[Any, ...]]:
    """The parked rows (of one aggregate, if named), oldest first."""
    query = (
        sa.select(
            _o.c.position,
            _o.c.event_id,
            _o.c.event_type,
            _o.c.aggregate_type,
            _o.c.aggregate_id,
            _o.c.aggregate_version,
            _o.c.parked_at,
            _o.c.error,
        )
        .where(_o.c.parked_at.is_not(None), _o.c.published_at.is_(None))
        .order_by(_o.c.position)
    )
    if aggregate is not None:
        query = query.where(_o.c.aggregate_type == aggregate[0], _o.c.aggregate_id == aggregate[1])
    return query


def parked_row(row: sa.Row[Any]) -> ParkedRow:
    """The :class:`ParkedRow` of a row from :func:`parked_rows`."""
    return ParkedRow(
        position=row.position,
        event_id=row.event_id,
        event_type=row.event_type,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        aggregate_version=row.aggregate_version,
        parked_at=row.parked_at,
        error=row.error or "",
    )


def retry_statement(
    position: int | None = None, aggregate: tuple[str, str] | None = None
) -> sa.Update:
    """The update that un-parks one row, an aggregate's rows, or (neither named) all of them."""
    if position is not None and aggregate is not None:
        raise ValueError("retry_parked takes a position or an aggregate, not both")
    update = _o.update().where(_o.c.parked_at.is_not(None), _o.c.published_at.is_(None))
    if position is not None:
        update = update.where(_o.c.position == position)
    if aggregate is not None:
        update = update.where(
            _o.c.aggregate_type == aggregate[0], _o.c.aggregate_id == aggregate[1]
        )
    return update.values(parked_at=None, error=None)
