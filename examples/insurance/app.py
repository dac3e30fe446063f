"""Wiring: both contexts on one event bus, in memory or on a SQL database.

This is the composition root, the one place that knows every adapter. The policy context
stores policies through its relational mapper; billing needs no mapping code and uses
tactical's default JSON document storage. Both write their events to the outbox of the
same database.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from examples.insurance.billing.acl import PolicyEventsTranslator
from examples.insurance.billing.services import BillingService
from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock
from examples.insurance.policy.events import (
    ClaimApproved,
    ClaimDenied,
    ClaimFiled,
    PolicyCancelled,
    PolicyExpired,
    PolicyIssued,
    PolicyReinstated,
    PolicySuspended,
)
from examples.insurance.policy.services import (
    ActivePoliciesProjection,
    PolicyQueries,
    PolicyService,
)
from examples.insurance.policy.sql import PolicyMapper, SqlPolicyQueries
from examples.insurance.policy.sql import metadata as policy_metadata
from tactical import DomainEvent, EventBus, InMemoryStore, InMemoryUnitOfWork, JsonCodec
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema


@dataclass(frozen=True)
class Insurance:
    """The running application: services of both contexts and the bus joining them."""

    policies: PolicyService
    queries: PolicyQueries
    billing: BillingService
    bus: EventBus


def in_memory(clock: Clock = SYSTEM_CLOCK) -> Insurance:
    """Both contexts in memory (one shared store), for tests and experiments."""
    bus, store = EventBus(), InMemoryStore()
    billing = BillingService(InMemoryUnitOfWork(bus, store=store))
    PolicyEventsTranslator(billing).subscribe_to(bus)
    projection = ActivePoliciesProjection()
    projection.subscribe_to(bus)
    policies = PolicyService(InMemoryUnitOfWork(bus, store=store), clock)
    return Insurance(policies, projection, billing, bus)


def insurance_codec() -> JsonCodec:
    """The codec of both contexts: stable names for the events other processes read.

    The outbox, the broker's routing keys and the consumers use these names, so moving or
    renaming an event class does not break stored or in-flight messages.
    """
    codec = JsonCodec()
    for event_type in PUBLISHED_EVENTS:
        codec.register(event_type, name=f"insurance.{event_type.__name__}")
    return codec


PUBLISHED_EVENTS: tuple[type[DomainEvent], ...] = (
    PolicyIssued,
    PolicyCancelled,
    ClaimFiled,
    ClaimApproved,
    ClaimDenied,
    PolicySuspended,
    PolicyReinstated,
    PolicyExpired,
)


def on_database(
    engine: sa.Engine, clock: Clock = SYSTEM_CLOCK, *, billing_in_process: bool = True
) -> Insurance:
    """Both contexts on ``engine`` (SQLite or PostgreSQL); creates missing tables.

    With ``billing_in_process=False`` the policy events reach billing only through the
    outbox, a broker and the billing worker (``python -m examples.insurance.worker``).
    """
    create_schema(engine)
    policy_metadata.create_all(engine, checkfirst=True)
    bus, codec = EventBus(), insurance_codec()
    billing = BillingService(SqlAlchemyUnitOfWork(engine, bus, codec=codec))
    if billing_in_process:
        PolicyEventsTranslator(billing).subscribe_to(bus)
    policies = PolicyService(
        SqlAlchemyUnitOfWork(engine, bus, codec=codec, mappers=[PolicyMapper()]), clock
    )
    return Insurance(policies, SqlPolicyQueries(engine), billing, bus)
