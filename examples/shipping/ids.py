"""Identifiers: of the shipping context's own objects and of the aggregates it refers to.

Aggregates reference each other by id only, never by object: a ``Shipment`` holds a
``CarrierId``, not a carrier. Each id is a :func:`~typing.NewType` over ``str`` so that a type
checker refuses a ``CustomerId`` where a ``CarrierId`` is expected, at no run-time cost.
"""

from __future__ import annotations

from typing import NewType

__all__ = ["CarrierId", "CustomerId", "InvoiceId", "ParcelId", "RateSnapshotId", "ShipmentId"]

ShipmentId = NewType("ShipmentId", str)
"""A shipment's air waybill number (AWB): 11 digits, the last a check digit."""

ParcelId = NewType("ParcelId", str)
"""A parcel's id, unique within its shipment."""

CustomerId = NewType("CustomerId", str)
"""A customer of the customer context."""

RateSnapshotId = NewType("RateSnapshotId", str)
"""The rate quote, frozen by the pricing context, that a shipment was booked at."""

CarrierId = NewType("CarrierId", str)
"""A carrier (the company that moves the parcels), as the carrier directory knows it."""

InvoiceId = NewType("InvoiceId", str)
"""An invoice of the billing context."""
