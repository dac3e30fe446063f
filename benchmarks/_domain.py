"""The model every persistence benchmark works on: an account that records deposits.

``Ledger`` adds child entities, for the benchmark of aggregate size.
"""

from __future__ import annotations

from dataclasses import field
from decimal import Decimal
from uuid import UUID

from tactical import AggregateRoot, DomainEvent, Entity

__all__ = ["Account", "Deposited", "Entry", "Ledger", "Posted"]


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
