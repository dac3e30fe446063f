"""Application services of the billing context, idempotent so redelivered events are harmless."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from examples.insurance.billing.model import (
    Amount,
    Frequency,
    PaymentSchedule,
    ScheduleStatus,
)
from tactical import UnitOfWork, retry_on_conflict


def start_payment_schedule(
    uow: UnitOfWork,
    *,
    reference: str,
    installment: Amount,
    first_due: date,
    ends_before: date,
    frequency: Frequency = Frequency.MONTHLY,
) -> bool:
    """In the open ``uow``: start billing ``reference`` unless it has a schedule already.

    Returns whether a schedule was started. The caller commits (or, for a message
    consumer, the consumer does, together with its inbox record).
    """
    schedules = uow.repository(PaymentSchedule)
    if schedules.get(PaymentSchedule.id_for(reference)) is not None:
        return False
    schedules.add(PaymentSchedule.start(reference, installment, first_due, ends_before, frequency))
    return True


def extend_payment_schedule(uow: UnitOfWork, reference: str, ends_before: date) -> bool:
    """In the open ``uow``: bill ``reference`` until ``ends_before``; False if nothing to do.

    Nothing to do: no schedule, a stopped one, or one that already runs that long (the
    same event delivered again).
    """
    schedule = uow.repository(PaymentSchedule).get(PaymentSchedule.id_for(reference))
    if (
        schedule is None
        or schedule.status is ScheduleStatus.STOPPED
        or schedule.ends_before >= ends_before
    ):
        return False
    schedule.extend(ends_before)
    return True


def stop_payment_schedule(uow: UnitOfWork, reference: str, stopped_from: date) -> bool:
    """In the open ``uow``: stop billing ``reference``; False if absent or stopped already."""
    schedule = uow.repository(PaymentSchedule).get(PaymentSchedule.id_for(reference))
    if schedule is None or schedule.status is ScheduleStatus.STOPPED:
        return False
    schedule.stop(stopped_from)
    return True


class BillingService:
    """Start and stop payment schedules, each in its own transaction."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def create_payment_schedule(
        self,
        *,
        reference: str,
        installment: Amount,
        first_due: date,
        ends_before: date,
        frequency: Frequency = Frequency.MONTHLY,
    ) -> UUID:
        """Start billing ``reference``; if its schedule exists already, leave it as it is."""
        with self._uow:
            if start_payment_schedule(
                self._uow,
                reference=reference,
                installment=installment,
                first_due=first_due,
                ends_before=ends_before,
                frequency=frequency,
            ):
                self._uow.commit()
        return PaymentSchedule.id_for(reference)

    def extend_payment_schedule(self, reference: str, ends_before: date) -> bool:
        """Bill ``reference`` until ``ends_before``; False if absent, stopped or that long already."""

        def transaction() -> bool:
            with self._uow:
                extended = extend_payment_schedule(self._uow, reference, ends_before)
                if extended:
                    self._uow.commit()
                return extended

        return retry_on_conflict(transaction)

    def stop_payment_schedule(self, reference: str, stopped_from: date) -> bool:
        """Stop billing ``reference``; False if it has no schedule or is stopped already."""

        def transaction() -> bool:
            with self._uow:
                stopped = stop_payment_schedule(self._uow, reference, stopped_from)
                if stopped:
                    self._uow.commit()
                return stopped

        return retry_on_conflict(transaction)

    def schedule_for(self, reference: str) -> PaymentSchedule | None:
        """A detached copy of the schedule billing ``reference``, if any."""
        with self._uow:
            return self._uow.repository(PaymentSchedule).get(PaymentSchedule.id_for(reference))
