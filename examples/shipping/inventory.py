"""The inventory context: how many carrier labels are left on the roll, per carrier.

A separate bounded context with its own aggregate, :class:`LabelStock`, and its own events.
It knows nothing about shipments: a request for labels names an opaque ``reference`` (the
shipping context passes its air waybill number). Its rule: the stock never goes negative.

What happens when labels run out (the decision this example documents and tests):

- Taking the **last** labels succeeds, leaves ``remaining == 0`` and records
  :class:`LabelStockExhausted` besides :class:`LabelsTaken`: the signal to reorder.
- Asking for **more** labels than remain is refused with :class:`InsufficientLabelStock`;
  nothing is taken. Whoever asked may then record the refusal with
  :meth:`LabelStock.record_refusal`, which counts the missing labels in
  ``refused_labels`` and records :class:`LabelRequestRefused`, so the shortfall is a
  durable fact that a stock count can reconcile, not just a log line.

A request is idempotent per reference: the same reference is never charged (or refused)
twice, so a redelivered event does not take labels again.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime, timedelta
from typing import ClassVar, NewType

from tactical import AggregateRoot, DomainEvent, InvalidStateError, InvariantViolation

__all__ = [
    "InsufficientLabelStock",
    "LabelRequestRefused",
    "LabelStock",
    "LabelStockEvent",
    "LabelStockExhausted",
    "LabelStockId",
    "LabelsRestocked",
    "LabelsTaken",
]

LabelStockId = NewType("LabelStockId", str)
"""The id of a label stock: the carrier whose labels it counts."""


class LabelStockEvent(DomainEvent):
    """Base of the inventory context's events about the stock ``stock_id``."""

    stock_id: LabelStockId


class LabelsRestocked(LabelStockEvent):
    """``quantity`` labels were added; ``remaining`` are now in stock."""

    quantity: int
    remaining: int


class LabelsTaken(LabelStockEvent):
    """``quantity`` labels were taken for ``reference``; ``remaining`` are left."""

    reference: str
    quantity: int
    remaining: int


class LabelStockExhausted(LabelStockEvent):
    """The last label was taken (for ``reference``): the stock is empty, reorder."""

    reference: str


class LabelRequestRefused(LabelStockEvent):
    """``requested`` labels for ``reference`` were refused: only ``remaining`` were left."""

    reference: str
    requested: int
    remaining: int


class InsufficientLabelStock(InvalidStateError):
    """More labels were asked for than the stock holds; nothing was taken.

    Attributes:
        stock_id: The stock asked.
        reference: Who asked.
        requested: How many labels were asked for.
        remaining: How many the stock holds.
    """

    def __init__(
        self, stock_id: LabelStockId, reference: str, requested: int, remaining: int
    ) -> None:
        super().__init__(
            f"Label stock {stock_id} cannot give {requested} label(s) for {reference}: "
            f"only {remaining} left"
        )
        self.stock_id = stock_id
        self.reference = reference
        self.requested = requested
        self.remaining = remaining


def _require_positive(quantity: int, what: str) -> None:
    if quantity <= 0:
        raise InvariantViolation(f"{what} must be a positive number of labels, got {quantity}")


class LabelStock(AggregateRoot[LabelStockId]):
    """The labels left for one carrier: the inventory context's aggregate root.

    Create one with :meth:`open`. ``remaining`` is never negative. ``handled`` holds the
    references already charged or refused, with when, so that a redelivered request changes
    nothing; entries older than :attr:`REDELIVERY_WINDOW` are dropped as requests come in,
    so the stock does not grow with every label ever printed.
    """

    REDELIVERY_WINDOW: ClassVar[timedelta] = timedelta(days=7)
    """How long a request may still arrive again (the message broker's redelivery horizon)."""

    remaining: int
    refused_labels: int = 0
    handled: dict[str, datetime] = field(default_factory=dict[str, datetime])

    @classmethod
    def open(cls, stock_id: LabelStockId, quantity: int, *, at: datetime) -> LabelStock:
        """A new stock holding ``quantity`` labels; records ``LabelsRestocked``.

        Raises:
            InvariantViolation: ``quantity`` is not positive.
        """
        _require_positive(quantity, f"Opening stock of {stock_id}")
        stock = cls(stock_id, remaining=quantity)
        stock.record(LabelsRestocked(stock_id, quantity, quantity, occurred_at=at))
        return stock

    def restock(self, quantity: int, *, at: datetime) -> None:
        """Add ``quantity`` labels; records ``LabelsRestocked``.

        Raises:
            InvariantViolation: ``quantity`` is not positive.
        """
        _require_positive(quantity, f"Restocking {self.id}")
        self.remaining += quantity
        self.record(LabelsRestocked(self.id, quantity, self.remaining, occurred_at=at))

    def take(self, quantity: int, reference: str, *, at: datetime) -> bool:
        """Take ``quantity`` labels for ``reference``; records ``LabelsTaken``, and
        ``LabelStockExhausted`` too when no label is left.

        Returns:
            ``True`` if labels were taken; ``False`` if ``reference`` was already handled
            (taken or refused before), in which case nothing changes.

        Raises:
            InvariantViolation: ``quantity`` is not positive.
            InsufficientLabelStock: Fewer than ``quantity`` labels remain; nothing is taken.
        """
        _require_positive(quantity, f"Taking labels from {self.id}")
        if reference in self.handled:
            return False
        if quantity > self.remaining:
            raise InsufficientLabelStock(self.id, reference, quantity, self.remaining)
        self.remaining -= quantity
        self._remember(reference, at)
        self.record(LabelsTaken(self.id, reference, quantity, self.remaining, occurred_at=at))
        if self.remaining == 0:
            self.record(LabelStockExhausted(self.id, reference, occurred_at=at))
        return True

    def record_refusal(self, quantity: int, reference: str, *, at: datetime) -> None:
        """Make a refused request a durable fact; records ``LabelRequestRefused``.

        Adds ``quantity`` to ``refused_labels``; ``remaining`` is unchanged. Recording the
        refusal of an already handled reference changes nothing.

        Raises:
            InvariantViolation: ``quantity`` is not positive.
            InvalidStateError: The stock could serve the request: there is nothing to refuse.
        """
        _require_positive(quantity, f"Refusing labels from {self.id}")
        if reference in self.handled:
            return
        if quantity <= self.remaining:
            raise InvalidStateError(
                f"Label stock {self.id} holds {self.remaining} label(s): "
                f"a request for {quantity} for {reference} is not refused"
            )
        self.refused_labels += quantity
        self._remember(reference, at)
        self.record(
            LabelRequestRefused(self.id, reference, quantity, self.remaining, occurred_at=at)
        )

    def _remember(self, reference: str, at: datetime) -> None:
        horizon = at - self.REDELIVERY_WINDOW
        self.handled = {r: when for r, when in self.handled.items() if when >= horizon}
        self.handled[reference] = at
