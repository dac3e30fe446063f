"""The model every persistence benchmark works on: an account that records deposits.

``Ledger`` adds child entities, for the benchmark of aggregate size. ``PlainAccount`` is
what the hand-written baselines use instead: a plain class with a list of events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

from tactical import AggregateRoot, DomainEvent, Entity

__all__ = ["Account", "Deposited", "Entry", "Ledger", "PlainAccount", "PlainDeposited", "Posted"]


class Deposited(DomainEvent):
    account_id: UUID
    amount: Decimal


class Account(AggregateRoot[UUID]):
    owner: str
    balance: Decimal = Decimal(0)

    def deposit(self, amount: Decimal) -> None:
        self.balance += amount
        self.record(Deposited(self.id, amount))


class Entry(Entity[int]):
    amount: Decimal
    memo: str


class Posted(DomainEvent):
    ledger_id: UUID
    amount: Decimal


class Ledger(AggregateRoot[UUID]):
    entries: list[Entry] = field(default_factory=list[Entry])
    total: Decimal = Decimal(0)

    def post_to(self, index: int, amount: Decimal) -> None:
        """Change one existing entry (the ledger keeps a fixed number of them)."""
        entry = self.entries[index % len(self.entries)]
        entry.amount += amount
        self.total += amount
        self.record(Posted(self.id, amount))


@dataclass(frozen=True, slots=True)
class PlainDeposited:
    account_id: UUID
    amount: Decimal
    event_id: UUID
    occurred_at: datetime


class PlainAccount:
    """A hand-written aggregate: a plain class with a list of events, rebuilt from a row."""

    def __init__(self, account_id: UUID, owner: str, balance: Decimal, version: int) -> None:
        self.id = account_id
        self.owner = owner
        self.balance = balance
        self.version = version
        self.events: list[PlainDeposited] = []

    def deposit(self, amount: Decimal) -> None:
        self.balance += amount
        self.events.append(PlainDeposited(self.id, amount, uuid4(), datetime.now(UTC)))
