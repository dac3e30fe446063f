"""The anti-corruption layer: the policy context's events, translated into billing commands.

This module is the only place where billing reads the policy context, and it reads only the
policy context's published events (:mod:`examples.insurance.policy.events`), never its
aggregate or tables. Policy premiums are quoted per month; billing wants whole cents and a
contract reference, so the translation happens here and nowhere else.
"""

from __future__ import annotations

from decimal import Decimal

from examples.insurance.billing.model import Amount, Frequency
from examples.insurance.billing.services import BillingService
from examples.insurance.policy.events import PolicyCancelled, PolicyIssued
from tactical import EventBus


def policy_reference(policy_id: object) -> str:
    """How billing refers to a policy: an opaque contract reference."""
    return f"policy:{policy_id}"


class PolicyEventsTranslator:
    """Creates a monthly schedule when a policy is issued; stops it when it is cancelled."""

    def __init__(self, billing: BillingService) -> None:
        self._billing = billing

    def subscribe_to(self, bus: EventBus) -> None:
        """Handle the policy events published on ``bus``."""
        bus.subscribe(PolicyIssued, self.on_policy_issued)
        bus.subscribe(PolicyCancelled, self.on_policy_cancelled)

    def on_policy_issued(self, event: PolicyIssued) -> None:
        """Start monthly billing of the premium over the coverage period."""
        cents = event.premium.amount * 100
        if cents != cents.to_integral_value():
            raise ValueError(f"premium {event.premium} is not a whole number of cents")
        self._billing.create_payment_schedule(
            reference=policy_reference(event.policy_id),
            installment=Amount(int(cents.quantize(Decimal(1))), event.premium.currency),
            first_due=event.coverage_period.start,
            ends_before=event.coverage_period.end,
            frequency=Frequency.MONTHLY,
        )

    def on_policy_cancelled(self, event: PolicyCancelled) -> None:
        """Stop billing from the cancellation's effective date."""
        self._billing.stop_payment_schedule(policy_reference(event.policy_id), event.effective_date)
