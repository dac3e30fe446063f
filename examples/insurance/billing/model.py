"""The PaymentSchedule aggregate: the installments billed for one contract."""

from __future__ import annotations

import calendar
import enum
from datetime import date
from uuid import UUID, uuid5

from tactical import AggregateRoot, DomainEvent, InvalidStateError, InvariantViolation, ValueObject

# Schedule ids derive from the contract reference: creating the schedule for a reference
# twice (a redelivered event) finds the first one instead of billing twice.
_SCHEDULE_NAMESPACE = UUID("8f6c7c3e-1d0b-4a55-9a49-3c0e8f7b2a11")


class Frequency(enum.Enum):
    """How often an installment falls due."""

    MONTHLY = "monthly"


class ScheduleStatus(enum.Enum):
    """Whether installments are still being billed."""

    ACTIVE = "active"
    STOPPED = "stopped"


class Amount(ValueObject):
    """Billing's money: whole cents of an ISO 4217 currency, never negative."""

    cents: int
    currency: str

    def validate(self) -> None:
        if self.cents < 0:
            raise InvariantViolation(f"Amount {self.cents} cents must not be negative")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise InvariantViolation(f"Currency {self.currency!r} must be an ISO 4217 code")

    def __str__(self) -> str:
        return f"{self.cents // 100}.{self.cents % 100:02d} {self.currency}"


class Installment(ValueObject):
    """One amount due on one day."""

    due_on: date
    amount: Amount


class PaymentScheduleStarted(DomainEvent):
    """Billing started for a contract."""

    schedule_id: UUID
    reference: str
    installment: Amount
    first_due: date


class PaymentScheduleStopped(DomainEvent):
    """Billing stopped for a contract: nothing falls due from ``stopped_from`` on."""

    schedule_id: UUID
    reference: str
    stopped_from: date


class PaymentScheduleExtended(DomainEvent):
    """The contract was extended: installments now fall due until ``ends_before``."""

    schedule_id: UUID
    reference: str
    ends_before: date


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the end of shorter months."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class PaymentSchedule(AggregateRoot[UUID]):
    """Installments of a fixed amount, due every period from ``first_due`` until ``ends_before``."""

    reference: str
    installment: Amount
    frequency: Frequency
    first_due: date
    ends_before: date
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    stopped_from: date | None = None

    @staticmethod
    def id_for(reference: str) -> UUID:
        """The schedule id for a contract reference (the same reference, the same id)."""
        return uuid5(_SCHEDULE_NAMESPACE, reference)

    @classmethod
    def start(
        cls,
        reference: str,
        installment: Amount,
        first_due: date,
        ends_before: date,
        frequency: Frequency = Frequency.MONTHLY,
    ) -> PaymentSchedule:
        """A new active schedule; records :class:`PaymentScheduleStarted`.

        Raises:
            InvariantViolation: The reference is empty or the schedule would bill nothing.
        """
        if not reference:
            raise InvariantViolation("A payment schedule needs a contract reference")
        if ends_before <= first_due:
            raise InvariantViolation(
                f"A payment schedule ending before {ends_before} bills nothing from {first_due}"
            )
        schedule = cls(
            cls.id_for(reference), reference, installment, frequency, first_due, ends_before
        )
        schedule.record(PaymentScheduleStarted(schedule.id, reference, installment, first_due))
        return schedule

    def installments(self) -> list[Installment]:
        """Every installment due, in order (none on or after ``stopped_from``)."""
        end = (
            self.ends_before
            if self.stopped_from is None
            else min(self.ends_before, self.stopped_from)
        )
        due: list[Installment] = []
        day = self.first_due
        while day < end:
            due.append(Installment(day, self.installment))
            day = add_months(self.first_due, len(due))
        return due

    def total_due(self) -> Amount:
        """The sum of all installments due."""
        return Amount(self.installment.cents * len(self.installments()), self.installment.currency)

    def extend(self, ends_before: date) -> None:
        """Bill until ``ends_before`` instead; records :class:`PaymentScheduleExtended`.

        Raises:
            InvalidStateError: The schedule was stopped.
            InvariantViolation: ``ends_before`` is not after the current end.
        """
        if self.status is ScheduleStatus.STOPPED:
            raise InvalidStateError(
                f"Payment schedule {self.reference} was stopped from {self.stopped_from}: "
                "it cannot be extended"
            )
        if ends_before <= self.ends_before:
            raise InvariantViolation(
                f"Extending payment schedule {self.reference} needs an end after "
                f"{self.ends_before}, got {ends_before}"
            )
        self.ends_before = ends_before
        self.record(PaymentScheduleExtended(self.id, self.reference, ends_before))

    def stop(self, stopped_from: date) -> None:
        """Bill nothing from ``stopped_from`` on; records :class:`PaymentScheduleStopped`."""
        if self.status is ScheduleStatus.STOPPED:
            raise InvalidStateError(
                f"Payment schedule {self.reference} was already stopped from {self.stopped_from}"
            )
        self.status = ScheduleStatus.STOPPED
        self.stopped_from = stopped_from
        self.record(PaymentScheduleStopped(self.id, self.reference, stopped_from))
