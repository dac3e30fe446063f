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
        schedule_id = PaymentSchedule.id_for(reference)
        with self._uow:
            schedules = self._uow.repository(PaymentSchedule)
            if schedules.get(schedule_id) is None:
                schedules.add(
                    PaymentSchedule.start(reference, installment, first_due, ends_before, frequency)
                )
                self._uow.commit()
        return schedule_id

    def stop_payment_schedule(self, reference: str, stopped_from: date) -> bool:
        """Stop billing ``reference``; False if it has no schedule or is stopped already."""

        def transaction() -> bool:
            with self._uow:
                schedule = self._uow.repository(PaymentSchedule).get(
                    PaymentSchedule.id_for(reference)
                )
                if schedule is None or schedule.status is ScheduleStatus.STOPPED:
                    return False
                schedule.stop(stopped_from)
                self._uow.commit()
                return True

        return retry_on_conflict(transaction)

    def schedule_for(self, reference: str) -> PaymentSchedule | None:
        """A detached copy of the schedule billing ``reference``, if any."""
        with self._uow:
            return self._uow.repository(PaymentSchedule).get(PaymentSchedule.id_for(reference))
