"""The anti-corruption layer: the policy context's events, translated into billing commands.

This module is the only place where billing reads the policy context, and it reads only the
policy context's published events (:mod:`examples.insurance.policy.events`), never its
aggregate or tables. Policy premiums are quoted per month; billing wants whole cents and a
contract reference, so the translation happens here and nowhere else.

Two deliveries use the same translation: in process, :class:`PolicyEventsTranslator`
handles events published on the bus after the policy's commit; across processes,
:func:`start_billing`, :func:`extend_billing` and :func:`stop_billing` run in a message
consumer's unit of work (see :mod:`examples.insurance.worker`). A renewal extends the
schedule to the new end of coverage; an expiry needs nothing, since the schedule ends
with the coverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from examples.insurance.billing.model import Amount, Frequency
from examples.insurance.billing.services import (
    BillingService,
    extend_payment_schedule,
    start_payment_schedule,
    stop_payment_schedule,
)
from examples.insurance.policy.events import PolicyCancelled, PolicyIssued, PolicyRenewed
from tactical import EventBus, UnitOfWork


def policy_reference(policy_id: object) -> str:
    """How billing refers to a policy: an opaque contract reference."""
    return f"policy:{policy_id}"


@dataclass(frozen=True)
class ScheduleTerms:
    """What billing needs to start a schedule, in billing's terms."""

    reference: str
    installment: Amount
    first_due: date
    ends_before: date
    frequency: Frequency = Frequency.MONTHLY


def terms_of(event: PolicyIssued) -> ScheduleTerms:
    """Translate an issued policy into billing terms: monthly, in whole cents.

    Raises:
        ValueError: The premium is not a whole number of cents.
    """
    cents = event.premium.amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"premium {event.premium} is not a whole number of cents")
    return ScheduleTerms(
        reference=policy_reference(event.policy_id),
        installment=Amount(int(cents.quantize(Decimal(1))), event.premium.currency),
        first_due=event.coverage_period.start,
        ends_before=event.coverage_period.end,
    )


def start_billing(event: PolicyIssued, uow: UnitOfWork) -> None:
    """In the consumer's unit of work: start the schedule of an issued policy."""
    terms = terms_of(event)
    start_payment_schedule(
        uow,
        reference=terms.reference,
        installment=terms.installment,
        first_due=terms.first_due,
        ends_before=terms.ends_before,
        frequency=terms.frequency,
    )


def extend_billing(event: PolicyRenewed, uow: UnitOfWork) -> None:
    """In the consumer's unit of work: bill a renewed policy until its new end of coverage."""
    extend_payment_schedule(uow, policy_reference(event.policy_id), event.coverage_period.end)


def stop_billing(event: PolicyCancelled, uow: UnitOfWork) -> None:
    """In the consumer's unit of work: stop billing a cancelled policy."""
    stop_payment_schedule(uow, policy_reference(event.policy_id), event.effective_date)


class PolicyEventsTranslator:
    """In process: a monthly schedule started on issue, extended on renewal, stopped on cancel."""

    def __init__(self, billing: BillingService) -> None:
        self._billing = billing

    def subscribe_to(self, bus: EventBus) -> None:
        """Handle the policy events published on ``bus``."""
        bus.subscribe(PolicyIssued, self.on_policy_issued)
        bus.subscribe(PolicyRenewed, self.on_policy_renewed)
        bus.subscribe(PolicyCancelled, self.on_policy_cancelled)

    def on_policy_issued(self, event: PolicyIssued) -> None:
        """Start monthly billing of the premium over the coverage period."""
        terms = terms_of(event)
        self._billing.create_payment_schedule(
            reference=terms.reference,
            installment=terms.installment,
            first_due=terms.first_due,
            ends_before=terms.ends_before,
            frequency=terms.frequency,
        )

    def on_policy_renewed(self, event: PolicyRenewed) -> None:
        """Bill until the new end of coverage."""
        self._billing.extend_payment_schedule(
            policy_reference(event.policy_id), event.coverage_period.end
        )

    def on_policy_cancelled(self, event: PolicyCancelled) -> None:
        """Stop billing from the cancellation's effective date."""
        self._billing.stop_payment_schedule(policy_reference(event.policy_id), event.effective_date)
