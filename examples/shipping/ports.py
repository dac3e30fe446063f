"""Ports: what the shipping domain needs from the outside world, as protocols.

The domain states the question; an adapter (:mod:`examples.shipping.adapters`) answers it
from wherever carriers are really listed. Tests pass any object with the right method.
"""

from __future__ import annotations

from typing import Protocol

from examples.shipping.ids import CarrierId

__all__ = ["CarrierDirectory"]


class CarrierDirectory(Protocol):
    """Which carriers pick up parcels in which countries."""

    def serves(self, carrier_id: CarrierId, iso_country: str) -> bool:
        """Whether ``carrier_id`` picks up parcels in ``iso_country`` (ISO 3166-1 alpha-2).

        An unknown carrier serves no country.
        """
        ...
