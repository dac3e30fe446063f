"""Event handlers that connect the shipping context to the inventory context.

The design's boundary rule: one transaction changes one aggregate. Printing a label changes
the ``Shipment``; taking labels from the stock changes a ``LabelStock``. So the shipment's
transaction commits with :class:`~examples.shipping.events.LabelPrinted`, the unit of work
publishes it, and :class:`LabelStockKeeper` takes the labels in the inventory's **own** unit
of work. The two never share a transaction: if the inventory fails, the shipment's
committed transaction is not undone.

When the stock holds fewer labels than the shipment printed, the inventory refuses to go
negative: it commits a ``LabelRequestRefused`` event and raises
:class:`~examples.shipping.inventory.InsufficientLabelStock`, which the bus hands back to the
shipment's caller inside :class:`~tactical.EventHandlerError`. The shipment stays
``LABEL_PRINTED``.
"""

from __future__ import annotations

from examples.shipping.events import LabelPrinted
from examples.shipping.inventory import LabelStockId
from examples.shipping.services import InventoryService
from tactical import EventBus

__all__ = ["LabelStockKeeper", "label_stock_of"]


def label_stock_of(event: LabelPrinted) -> LabelStockId:
    """The label stock a printed label is taken from: the carrier's."""
    return LabelStockId(event.carrier_id)


class LabelStockKeeper:
    """Takes one label per printed parcel label from the carrier's stock.

    Args:
        inventory: The inventory context's service; it runs its own units of work.
    """

    def __init__(self, inventory: InventoryService) -> None:
        self._inventory = inventory

    def subscribe_to(self, bus: EventBus) -> None:
        """Handle every ``LabelPrinted`` published on ``bus``."""
        bus.subscribe(LabelPrinted, self.on_label_printed)

    def on_label_printed(self, event: LabelPrinted) -> None:
        """Take ``event.label_count`` labels for the shipment, in the inventory's transaction.

        Raises:
            InsufficientLabelStock: The stock is short; the refusal is committed.
            AggregateNotFound: The carrier has no label stock.
        """
        self._inventory.take_labels(label_stock_of(event), event.label_count, event.shipment_id)
