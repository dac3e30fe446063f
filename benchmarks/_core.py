"""The baseline of the SQL rows: each workload written by hand in SQLAlchemy Core.

The same tables, indexes and rows as tactical's unit of work: the account's JSON document in
``tactical_aggregates`` (version-checked update) and one ``tactical_outbox`` row per event,
in one transaction, the events handed to a subscriber after the commit. Statements are built
once with bound parameters (what tactical does too); states and payloads are built as plain
dicts, as the codec would produce them. What hand-written code skips is what tactical adds:
the codec's checks, change detection, the unit of work's bookkeeping and the bus.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from benchmarks._domain import Account, Deposited, PlainAccount
from benchmarks._sql import AMOUNT, saved_account
from tactical import JsonCodec
from tactical.outbox import partition_key
from tactical.sqlalchemy import aggregates_table, outbox_table

_doc = aggregates_table.c
_IS_ROW = (
    _doc.aggregate_type == sa.bindparam("type_name", type_=_doc.aggregate_type.type),
    _doc.aggregate_id == sa.bindparam("key", type_=_doc.aggregate_id.type),
)
SELECT = sa.select(_doc.version, _doc.state).where(*_IS_ROW)
UPDATE = (
    aggregates_table.update()
    .where(*_IS_ROW, _doc.version == sa.bindparam("expected", type_=sa.Integer()))
    .values(
        version=sa.bindparam("new_version", type_=sa.Integer()),
        state=sa.bindparam("new_state", type_=_doc.state.type),
        updated_at=sa.bindparam("now", type_=_doc.updated_at.type),
    )
)
INSERT = aggregates_table.insert()
INSERT_OUTBOX = outbox_table.insert()

Handler = Callable[[dict[str, Any]], object]


def outbox_row(
    event_type: str, type_name: str, key: str, version: int, amount: Decimal
) -> dict[str, Any]:
    """The outbox row of one deposit, with the payload the codec would write."""
    now = datetime.now(UTC)
    event_id = uuid4()
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_version": 1,
        "aggregate_type": type_name,
        "aggregate_id": key,
        "aggregate_version": version,
        "payload": {
            "event_id": str(event_id),
            "occurred_at": now.isoformat(),
            "account_id": key,
            "amount": str(amount),
        },
        "occurred_at": now,
        "published_at": None,
        "correlation_id": event_id,
        "causation_id": None,
        # What tactical writes too: a NULL key would put the row in the partial index of
        # rows written without one (by units of work older than 0.2), which tactical's never are.
        "partition_key": partition_key(type_name, key),
    }


def core_create(
    engine: sa.Engine, codec: JsonCodec, handler: Handler, *, events: int
) -> Callable[[], None]:
    """Insert a new account's document and its ``events`` outbox rows; publish after commit."""
    type_name = codec.type_name(Account)
    event_type = codec.type_name(Deposited)

    def call() -> None:
        key = str(uuid4())
        rows = [outbox_row(event_type, type_name, key, 1, AMOUNT) for _ in range(events)]
        with engine.connect() as connection:
            connection.begin()
            connection.execute(
                INSERT,
                {
                    "aggregate_type": type_name,
                    "aggregate_id": key,
                    "version": 1,
                    "state": {"id": key, "owner": "ada", "balance": str(AMOUNT * events)},
                    "updated_at": datetime.now(UTC),
                },
            )
            connection.execute(INSERT_OUTBOX, rows[0] if events == 1 else rows)
            connection.commit()
        for row in rows:
            handler(row["payload"])

    return call


def core_deposit(
    engine: sa.Engine, codec: JsonCodec, handler: Handler, account_id: UUID
) -> Callable[[], None]:
    """Select the document, update it under a version check, insert the outbox row, commit."""
    type_name = codec.type_name(Account)
    event_type = codec.type_name(Deposited)
    key = str(account_id)
    where = {"type_name": type_name, "key": key}

    def call() -> None:
        with engine.connect() as connection:
            connection.begin()
            version, state = connection.execute(SELECT, where).one()
            new_state = {**state, "balance": str(Decimal(state["balance"]) + AMOUNT)}
            updated = connection.execute(
                UPDATE,
                {
                    **where,
                    "expected": version,
                    "new_version": version + 1,
                    "new_state": new_state,
                    "now": datetime.now(UTC),
                },
            )
            if updated.rowcount != 1:
                raise RuntimeError(f"account {key} changed since it was read")
            row = outbox_row(event_type, type_name, key, version + 1, AMOUNT)
            connection.execute(INSERT_OUTBOX, row)
            connection.commit()
        handler(row["payload"])

    return call


def core_load(engine: sa.Engine, codec: JsonCodec, account_id: UUID) -> Callable[[], None]:
    """Select the document and rebuild a plain object from it."""
    where = {"type_name": codec.type_name(Account), "key": str(account_id)}

    def call() -> None:
        with engine.connect() as connection:
            connection.begin()
            version, state = connection.execute(SELECT, where).one()
            PlainAccount(UUID(state["id"]), state["owner"], Decimal(state["balance"]), version)

    return call


def core_workload(
    workload: str, engine: sa.Engine, codec: JsonCodec, handler: Handler
) -> Callable[[], None]:
    """The hand-written side of ``workload`` (a key of ``benchmarks._sql.WORKLOADS``)."""
    if workload == "create":
        return core_create(engine, codec, handler, events=1)
    if workload == "create10":
        return core_create(engine, codec, handler, events=10)
    account_id = saved_account(engine, codec)
    if workload == "update":
        return core_deposit(engine, codec, handler, account_id)
    return core_load(engine, codec, account_id)
