"""Parcel shipping: the ``Shipment`` aggregate and, beside it, an inventory context.

Built only on tactical's public API, in layers:

- :mod:`~examples.shipping.domain`, :mod:`~examples.shipping.events`,
  :mod:`~examples.shipping.ports`: the shipping context's model. A ``Shipment`` (root) holds
  its ``Parcel`` child entities and value objects, refers to customer, rate snapshot, carrier
  and invoice by id only, and enforces five invariants itself.
- :mod:`~examples.shipping.inventory`: a separate bounded context whose ``LabelStock``
  aggregate counts the thermal labels left for one carrier.
- :mod:`~examples.shipping.services`: application services, one aggregate per transaction.
- :mod:`~examples.shipping.handlers`: the bridge between the contexts: ``LabelPrinted``
  takes labels from the stock in the inventory's own transaction, never in the shipment's.
- :mod:`~examples.shipping.adapters`: SQL wiring with the default JSON document storage
  (no mapping code) and an in-memory carrier directory.

Run the narrated scenario with ``python -m examples.shipping``.
"""
