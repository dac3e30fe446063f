"""Classes as a script run with ``python script.py`` defines them: their module is __main__.

No ``from __future__ import annotations`` here: the annotations are objects already, so they
resolve although ``__main__`` (pytest's) does not hold these names.
"""

from uuid import UUID

from tactical import AggregateRoot, DomainEvent


class MainLedger(AggregateRoot[UUID]):
    """An aggregate of a script."""

    __module__ = "__main__"
    entries: int = 0


class MainEntryBooked(DomainEvent):
    """An event of a script."""

    __module__ = "__main__"
    ledger_id: UUID
