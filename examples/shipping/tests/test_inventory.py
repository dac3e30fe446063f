"""The inventory context's LabelStock, pure: it never goes negative."""

from __future__ import annotations

from datetime import timedelta

import pytest

from examples.shipping.inventory import (
    InsufficientLabelStock,
    LabelRequestRefused,
    LabelsRestocked,
    LabelsTaken,
    LabelStock,
    LabelStockExhausted,
    LabelStockId,
)
from examples.shipping.tests.factories import T0, at
from tactical import InvalidStateError, InvariantViolation

STOCK = LabelStockId("PARCEL-POST")


def stock(quantity: int) -> LabelStock:
    """A stock of ``quantity`` labels with no pending events."""
    opened = LabelStock.open(STOCK, quantity, at=T0)
    opened.clear_events()
    return opened


class TestOpenAndRestock:
    """Stocks open and grow by positive quantities."""

    def test_opening_records_labels_restocked(self) -> None:
        """The opening quantity is the first restock."""
        opened = LabelStock.open(STOCK, 3, at=T0)
        assert opened.remaining == 3
        assert [type(e) for e in opened.pending_events] == [LabelsRestocked]

    def test_restocking_adds_labels(self) -> None:
        """Restocking 5 onto 3 leaves 8, and says so."""
        labels = stock(3)
        labels.restock(5, at=at(1))
        assert labels.remaining == 8
        (event,) = labels.pending_events
        assert isinstance(event, LabelsRestocked)
        assert (event.quantity, event.remaining) == (5, 8)

    @pytest.mark.parametrize("quantity", [0, -2])
    def test_quantities_must_be_positive(self, quantity: int) -> None:
        """Opening, restocking and taking refuse non-positive quantities."""
        with pytest.raises(InvariantViolation, match=f"positive number of labels, got {quantity}"):
            LabelStock.open(STOCK, quantity, at=T0)
        with pytest.raises(InvariantViolation, match="positive number of labels"):
            stock(3).restock(quantity, at=at(1))
        with pytest.raises(InvariantViolation, match="positive number of labels"):
            stock(3).take(quantity, "ref", at=at(1))


class TestTake:
    """Taking labels decrements the stock, down to zero and no further."""

    def test_taking_records_labels_taken(self) -> None:
        """Two of three labels leave one."""
        labels = stock(3)
        assert labels.take(2, "17612345675", at=at(1)) is True
        assert labels.remaining == 1
        (event,) = labels.pending_events
        assert isinstance(event, LabelsTaken)
        assert (event.reference, event.quantity, event.remaining) == ("17612345675", 2, 1)

    def test_taking_the_last_label_records_stock_exhausted(self) -> None:
        """Reaching zero is allowed, and announced for reordering."""
        labels = stock(2)
        labels.take(2, "A", at=at(1))
        assert labels.remaining == 0
        assert [type(e) for e in labels.pending_events] == [LabelsTaken, LabelStockExhausted]

    def test_taking_more_than_remains_is_refused_and_takes_nothing(self) -> None:
        """The stock never goes negative; the error names the numbers."""
        labels = stock(1)
        with pytest.raises(
            InsufficientLabelStock, match=r"cannot give 2 label.s. for B: only 1 left"
        ) as refusal:
            labels.take(2, "B", at=at(1))
        assert (refusal.value.requested, refusal.value.remaining) == (2, 1)
        assert labels.remaining == 1
        assert labels.pending_events == ()

    def test_the_same_reference_is_charged_once(self) -> None:
        """A redelivered request changes nothing and says so."""
        labels = stock(5)
        labels.take(2, "A", at=at(1))
        labels.clear_events()
        assert labels.take(2, "A", at=at(2)) is False
        assert labels.remaining == 3
        assert labels.pending_events == ()


class TestHandledReferences:
    """Handled references are kept for the redelivery window, then forgotten."""

    def test_a_reference_is_remembered_within_the_window(self) -> None:
        """A request redelivered just inside the window is still recognised."""
        labels = stock(5)
        labels.take(1, "A", at=T0)
        just_inside = T0 + LabelStock.REDELIVERY_WINDOW
        labels.take(1, "B", at=just_inside)
        assert labels.handled == {"A": T0, "B": just_inside}
        assert labels.take(1, "A", at=just_inside) is False
        assert labels.remaining == 3

    def test_references_older_than_the_window_are_dropped(self) -> None:
        """Handling a request forgets those handled more than the window ago, refusals too."""
        labels = stock(1)
        labels.take(1, "A", at=T0)
        labels.record_refusal(1, "R", at=T0)
        later = T0 + LabelStock.REDELIVERY_WINDOW + timedelta(seconds=1)
        labels.restock(1, at=later)
        labels.take(1, "B", at=later)
        assert labels.handled == {"B": later}


class TestRecordRefusal:
    """A refused request can be made a durable fact."""

    def test_refusal_counts_the_missing_labels(self) -> None:
        """refused_labels grows, remaining does not change."""
        labels = stock(1)
        labels.record_refusal(2, "B", at=at(1))
        assert (labels.remaining, labels.refused_labels) == (1, 2)
        (event,) = labels.pending_events
        assert isinstance(event, LabelRequestRefused)
        assert (event.reference, event.requested, event.remaining) == ("B", 2, 1)

    def test_a_request_the_stock_can_serve_is_not_refused(self) -> None:
        """Recording a refusal that is not one is an error."""
        with pytest.raises(InvalidStateError, match=r"holds 3 label.s.: a request for 2"):
            stock(3).record_refusal(2, "B", at=at(1))

    def test_a_refused_reference_is_not_charged_later(self) -> None:
        """After a refusal, a redelivered request for the same reference takes nothing."""
        labels = stock(1)
        labels.record_refusal(2, "B", at=at(1))
        labels.restock(10, at=at(2))
        labels.clear_events()
        assert labels.take(2, "B", at=at(3)) is False
        assert labels.remaining == 11
        labels.record_refusal(20, "B", at=at(4))
        assert labels.refused_labels == 2
        assert labels.pending_events == ()
