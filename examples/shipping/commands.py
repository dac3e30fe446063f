"""Commands: requests that one context's handler carries out, in a transaction of its own.

An event says what happened and goes to any number of handlers; a command asks for one
thing to be done and goes to exactly one handler, through a :class:`~tactical.CommandBus`,
which returns that handler's result. The bridges between the contexts
(:mod:`examples.shipping.handlers`) read events and dispatch these commands:

- :class:`DecrementLabelStock`, handled by the inventory context: printing a label
  records ``LabelPrinted``; a handler of it asks the inventory to take the labels from the
  carrier's ``LabelStock``.
- :class:`RecordMissedPickup`, handled by the shipping context: the pickup deadline's
  durable timer fired, so the shipment gets an exception unless it was picked up.
"""

from __future__ import annotations

from examples.shipping.ids import ShipmentId
from examples.shipping.inventory import LabelStockId
from tactical import Command

__all__ = ["DecrementLabelStock", "RecordMissedPickup"]


class DecrementLabelStock(Command[bool]):
    """Take ``quantity`` labels from the stock ``stock_id`` for ``reference``.

    The handler returns whether labels were taken (``False``: ``reference`` was handled
    before, a redelivery). It raises
    :class:`~examples.shipping.inventory.InsufficientLabelStock` when fewer labels remain,
    after committing the refusal.
    """

    stock_id: LabelStockId
    quantity: int
    reference: str


class RecordMissedPickup(Command[bool]):
    """Give the shipment an exception if its pickup window ended without a pickup scan.

    The handler returns whether the exception was recorded (``False``: the shipment was
    picked up, or no longer waits for its pickup, so there is nothing to record).
    """

    shipment_id: ShipmentId
