"""A process manager for the tests: a shipment's pickup deadline, as the shipping design has it.

A printed label starts the process and schedules a deadline; a pickup scan completes it and
cancels the deadline; the deadline, when it fires first, asks for a shipment exception.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from tactical import Command, DomainEvent, ProcessManager

PICKUP_WINDOW = timedelta(hours=24)


class LabelPrinted(DomainEvent):
    shipment_id: UUID
    carrier: str


class PickupScanned(DomainEvent):
    shipment_id: UUID


class PickupDeadlinePassed(DomainEvent):
    shipment_id: UUID


class PickupMissed(DomainEvent):
    shipment_id: UUID
    carrier: str


class RaiseShipmentException(Command):
    shipment_id: UUID
    reason: str


class DecrementLabelStock(Command):
    carrier: str


def deadline_key(shipment_id: UUID) -> str:
    return f"pickup-deadline:{shipment_id}"


class PickupDeadline(ProcessManager[UUID]):
    """Watches one shipment from its printed label to its pickup scan."""

    carrier: str = ""
    missed: bool = False

    @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
    def label_printed(self, event: LabelPrinted) -> None:
        self.carrier = event.carrier
        self.dispatch(DecrementLabelStock(event.carrier))
        self.schedule(
            PickupDeadlinePassed(self.id),
            at=event.occurred_at + PICKUP_WINDOW,
            key=deadline_key(self.id),
        )

    @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
    def pickup_scanned(self, event: PickupScanned) -> None:
        self.cancel(deadline_key(self.id))
        self.complete()

    @ProcessManager.advances(PickupDeadlinePassed, key=lambda e: e.shipment_id)
    def deadline_passed(self, event: PickupDeadlinePassed) -> None:
        self.missed = True
        self.record(PickupMissed(self.id, self.carrier))
        self.dispatch(RaiseShipmentException(self.id, f"no pickup scan from {self.carrier}"))
        self.complete()
