"""Parcel shipping: the ``Shipment`` aggregate and, beside it, an inventory context.

Built only on tactical's public API, in layers:

- :mod:`~examples.shipping.ids`, :mod:`~examples.shipping.domain`,
  :mod:`~examples.shipping.events`, :mod:`~examples.shipping.ports`: the shipping context's
  model. A ``Shipment`` (root) holds its ``Parcel`` child entities and value objects, refers
  to customer, rate snapshot, carrier and invoice by id only, and enforces five invariants
  itself.
- :mod:`~examples.shipping.inventory`: a separate bounded context whose ``LabelStock``
  aggregate counts the thermal labels left for one carrier. It never goes negative: a
  request for more labels than remain is refused, and the refusal is committed as an event
  (``LabelRequestRefused``) in the inventory's transaction.
- :mod:`~examples.shipping.commands`: the commands each context's one handler carries out
  (``DecrementLabelStock``, ``RecordMissedPickup``), dispatched on a
  :class:`~tactical.CommandBus`.
- :mod:`~examples.shipping.services`: application services, one aggregate per transaction.
  Printing a label also schedules its pickup deadline, a durable timer, in the same
  transaction; the pickup scan cancels it.
- :mod:`~examples.shipping.handlers`: the bridges between the contexts, each an event
  handler that dispatches a command. On ``LabelPrinted``, ``DecrementLabelStock`` takes
  labels from the stock in the inventory's own transaction, never in the shipment's. When
  the stock refuses, the printed shipment stays printed (its transaction had already
  committed) and the caller of ``print_label`` gets :class:`~tactical.EventHandlerError`.
  When a pickup deadline fires, ``RecordMissedPickup`` gives a shipment that was not picked
  up a shipment exception.
- :mod:`~examples.shipping.adapters`: SQL wiring with the default JSON document storage
  (no mapping code), the timer worker and outbox relay that fire the deadlines, and an
  in-memory carrier directory.

Run the narrated scenario with ``python -m examples.shipping``.
"""
