"""Event handlers that connect the contexts: each reads an event and dispatches a command.

The design's boundary rule: one transaction changes one aggregate. Printing a label changes
the ``Shipment``; taking labels from the stock changes a ``LabelStock``. So the shipment's
transaction commits with :class:`~examples.shipping.events.LabelPrinted`, the unit of work
publishes it once its block has ended, and :class:`LabelStockKeeper` dispatches
:class:`~examples.shipping.commands.DecrementLabelStock` through the
:class:`~tactical.CommandBus`; its one handler, the inventory service, takes the labels in
the inventory's **own** unit of work. The two never share a transaction: if the inventory
fails, the shipment's committed transaction is not undone.

When the stock holds fewer labels than the shipment printed, the inventory refuses to go
negative: it commits a ``LabelRequestRefused`` event and raises
:class:`~examples.shipping.inventory.InsufficientLabelStock`. The command bus hands it back
unwrapped to the handler, and the event bus to the shipment's caller inside
:class:`~tactical.EventHandlerError`. The shipment stays ``LABEL_PRINTED``.

:class:`PickupDeadlineWatcher` does the same for the pickup deadline: when its durable timer
fires, :class:`~examples.shipping.events.PickupDeadlinePassed` arrives (through the outbox
relay, on SQL) and the watcher dispatches
:class:`~examples.shipping.commands.RecordMissedPickup` to the shipping context.
"""

from __future__ import annotations

from examples.shipping.commands import DecrementLabelStock, RecordMissedPickup
from examples.shipping.events import LabelPrinted, PickupDeadlinePassed
from examples.shipping.inventory import LabelStockId
from tactical import CommandBus, EventBus

__all__ = ["LabelStockKeeper", "PickupDeadlineWatcher", "label_stock_of"]


def label_stock_of(event: LabelPrinted) -> LabelStockId:
    """The label stock a printed label is taken from: the carrier's."""
    return LabelStockId(event.carrier_id)


class LabelStockKeeper:
    """Asks the inventory for one label per printed parcel label, from the carrier's stock.

    Args:
        commands: The bus the inventory handles
            :class:`~examples.shipping.commands.DecrementLabelStock` on.
    """

    def __init__(self, commands: CommandBus) -> None:
        self._commands = commands

    def subscribe_to(self, bus: EventBus) -> None:
        """Handle every ``LabelPrinted`` published on ``bus``."""
        bus.subscribe(LabelPrinted, self.on_label_printed)

    def on_label_printed(self, event: LabelPrinted) -> None:
        """Dispatch ``DecrementLabelStock`` for ``event.label_count`` labels of the shipment.

        Its handler runs in the inventory's transaction; a redelivered event takes nothing.

        Raises:
            InsufficientLabelStock: The stock is short; the refusal is committed.
            AggregateNotFound: The carrier has no label stock.
        """
        self._commands.dispatch(
            DecrementLabelStock(label_stock_of(event), event.label_count, event.shipment_id)
        )


class PickupDeadlineWatcher:
    """Turns a fired pickup deadline into ``RecordMissedPickup`` for the shipment.

    Args:
        commands: The bus the shipping context handles
            :class:`~examples.shipping.commands.RecordMissedPickup` on.
    """

    def __init__(self, commands: CommandBus) -> None:
        self._commands = commands

    def subscribe_to(self, bus: EventBus) -> None:
        """Handle every ``PickupDeadlinePassed`` published on ``bus``."""
        bus.subscribe(PickupDeadlinePassed, self.on_deadline_passed)

    def on_deadline_passed(self, event: PickupDeadlinePassed) -> None:
        """Dispatch ``RecordMissedPickup``: a shipment picked up meanwhile is left as it is,
        so a deadline delivered twice records one exception."""
        self._commands.dispatch(RecordMissedPickup(event.shipment_id))
