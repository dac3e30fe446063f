"""The InsurancePolicy aggregate: pure unit tests, no database, no mocks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from examples.insurance.policy.events import (
    ClaimApproved,
    ClaimDenied,
    ClaimFiled,
    PolicyCancelled,
    PolicyExpired,
    PolicyIssued,
    PolicyReinstated,
    PolicyRenewed,
    PolicySuspended,
)
from examples.insurance.policy.model import (
    ClaimStatus,
    InsurancePolicy,
    PolicyStatus,
    UnknownClaim,
)
from examples.insurance.policy.values import DateRange, Money
from examples.insurance.tests.conftest import (
    COVERAGE,
    TODAY,
    create_active_policy,
    create_draft_policy,
    fixed_clock,
    holder,
    usd,
)
from tactical import InvalidStateError, InvariantViolation
from tactical.testing import given

CLOCK = fixed_clock()


def draft() -> InsurancePolicy:
    return create_draft_policy(coverage=COVERAGE, clock=CLOCK)


def active(max_claim: str = "1000") -> InsurancePolicy:
    return create_active_policy(Decimal(max_claim), clock=CLOCK)


class TestDesignDocument:
    """The design document's three tests, as written."""

    def test_cannot_file_claim_on_inactive_policy(self) -> None:
        policy = create_draft_policy()
        with pytest.raises(ValueError, match="active policies"):
            policy.file_claim(uuid4(), Money(Decimal("500"), "USD"), "Water damage")

    def test_claim_total_cannot_exceed_maximum(self) -> None:
        policy = create_active_policy(max_claim=Decimal("1000"))
        policy.file_claim(uuid4(), Money(Decimal("800"), "USD"), "First claim")
        with pytest.raises(ValueError, match="exceed maximum"):
            policy.file_claim(uuid4(), Money(Decimal("300"), "USD"), "Second claim")

    def test_activate_emits_policy_issued_event(self) -> None:
        policy = create_draft_policy()
        policy.activate()
        events = policy.pending_events
        assert len(events) == 1
        assert isinstance(events[0], PolicyIssued)
        assert events[0].policy_id == policy.id


class TestDraft:
    def test_max_claim_must_be_in_premium_currency(self) -> None:
        """A policy quoting its maximum in another currency than its premium is refused."""
        with pytest.raises(InvariantViolation, match="must be in the premium's currency USD"):
            InsurancePolicy.draft(
                uuid4(), holder(), usd("50.00"), COVERAGE, Money(Decimal("1000.00"), "EUR")
            )


class TestActivate:
    def test_activation_puts_the_policy_in_force_and_records_policy_issued(self) -> None:
        """Activation records PolicyIssued with the holder, premium and period, at the clock's time."""
        policy = draft()
        given(policy).when(lambda p: p.activate(CLOCK)).then(
            PolicyIssued(policy.id, policy.holder.id, usd("50.00"), COVERAGE)
        )
        assert policy.status is PolicyStatus.ACTIVE
        assert policy.pending_events[0].occurred_at == CLOCK.now()

    def test_only_a_draft_can_be_activated(self) -> None:
        """Activating an active policy is refused and changes nothing."""
        given(active()).when(lambda p: p.activate(CLOCK)).then_raises(
            InvalidStateError, match="Cannot activate policy .* in active state"
        )

    @pytest.mark.parametrize(
        ("born", "allowed"),
        [
            (date(2008, 3, 15), True),  # 18 today
            (date(2008, 3, 16), False),  # 18 tomorrow
            (date(1950, 1, 1), True),
        ],
    )
    def test_holder_must_be_at_least_18_on_the_clock_s_date(
        self, born: date, allowed: bool
    ) -> None:
        """Age is computed from the injected clock, to the day."""
        policy = create_draft_policy(born=born, coverage=COVERAGE, clock=CLOCK)
        if allowed:
            given(policy).when(lambda p: p.activate(CLOCK)).then(PolicyIssued)
        else:
            given(policy).when(lambda p: p.activate(CLOCK)).then_raises(
                InvariantViolation, match="at least 18 years old; Grace Hopper is 17 on 2026-03-15"
            )

    def test_cannot_activate_after_coverage_ended(self) -> None:
        """A policy whose coverage is over cannot come into force."""
        policy = create_draft_policy(
            coverage=DateRange(date(2025, 1, 1), date(2026, 1, 1)), clock=CLOCK
        )
        given(policy).when(lambda p: p.activate(CLOCK)).then_raises(
            InvalidStateError, match="coverage ended on 2026-01-01"
        )


class TestFileClaim:
    def test_a_valid_claim_is_pending_and_recorded(self) -> None:
        """Filing records ClaimFiled and adds a pending claim."""
        claim_id, policy = uuid4(), active()
        given(policy).when(
            lambda p: p.file_claim(claim_id, usd("500.00"), "Hail", TODAY, clock=CLOCK)
        ).then(ClaimFiled(claim_id, policy.id, usd("500.00"), "Hail", TODAY))
        assert policy.claim(claim_id).status is ClaimStatus.PENDING
        assert policy.claim(claim_id).filed_at == CLOCK.now()

    @pytest.mark.parametrize("status_command", ["suspend", "cancel"])
    def test_claims_only_on_active_policies(self, status_command: str) -> None:
        """Suspended and cancelled policies take no claims."""
        policy = active()
        getattr(policy, status_command)("reason", clock=CLOCK)
        given(policy).when(
            lambda p: p.file_claim(uuid4(), usd("1.00"), "Hail", TODAY, clock=CLOCK)
        ).then_raises(InvalidStateError, match="only be filed on active policies")

    def test_claim_currency_must_match_premium(self) -> None:
        """A claim in another currency is refused, naming both."""
        given(active()).when(
            lambda p: p.file_claim(
                uuid4(), Money(Decimal("5.00"), "EUR"), "Hail", TODAY, clock=CLOCK
            )
        ).then_raises(InvariantViolation, match="Claim currency EUR must match policy currency USD")

    def test_single_claim_cannot_exceed_maximum(self) -> None:
        """The error names the amount and the maximum."""
        given(active()).when(
            lambda p: p.file_claim(uuid4(), usd("1200.00"), "Fire", TODAY, clock=CLOCK)
        ).then_raises(
            InvariantViolation, match="Claim amount 1200.00 USD exceeds the policy maximum 1000 USD"
        )

    def test_pending_total_counts_only_pending_claims(self) -> None:
        """Decided claims free the maximum for new ones."""
        policy = active()
        first = policy.file_claim(uuid4(), usd("800.00"), "Flood", TODAY, clock=CLOCK)
        policy.approve_claim(first.id, clock=CLOCK)
        given(policy).when(
            lambda p: p.file_claim(uuid4(), usd("300.00"), "Wind", TODAY, clock=CLOCK)
        ).then(ClaimFiled)

    @pytest.mark.parametrize(
        ("incident", "message"),
        [
            (COVERAGE.start - timedelta(days=1), "outside the coverage period"),
            (TODAY + timedelta(days=1), "is in the future"),
        ],
    )
    def test_incident_must_be_inside_coverage_and_not_in_the_future(
        self, incident: date, message: str
    ) -> None:
        """Claims are for incidents that happened while covered."""
        given(active()).when(
            lambda p: p.file_claim(uuid4(), usd("10.00"), "Hail", incident, clock=CLOCK)
        ).then_raises(InvariantViolation, match=message)

    def test_incident_date_defaults_to_today(self) -> None:
        """Without an incident date, the claim is for the clock's today."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("10.00"), "Hail", clock=CLOCK)
        assert claim.incident_date == TODAY

    def test_description_is_required(self) -> None:
        """A blank description is refused."""
        given(active()).when(
            lambda p: p.file_claim(uuid4(), usd("10.00"), "  ", TODAY, clock=CLOCK)
        ).then_raises(InvariantViolation, match="needs a description")

    def test_claim_ids_are_unique(self) -> None:
        """Filing the same claim id twice is refused."""
        claim_id, policy = uuid4(), active()
        policy.file_claim(claim_id, usd("10.00"), "Hail", TODAY, clock=CLOCK)
        given(policy).when(
            lambda p: p.file_claim(claim_id, usd("10.00"), "Hail", TODAY, clock=CLOCK)
        ).then_raises(InvariantViolation, match="already filed")


class TestDecideClaims:
    def test_approval_of_a_pending_claim(self) -> None:
        """Approving records ClaimApproved with the full amount."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        given(policy).when(lambda p: p.approve_claim(claim.id, clock=CLOCK)).then(
            ClaimApproved(claim.id, policy.id, usd("70.00"))
        )
        assert policy.claim(claim.id).status is ClaimStatus.APPROVED
        assert policy.claim(claim.id).decided_at == CLOCK.now()

    def test_denial_of_a_pending_claim_keeps_the_reason(self) -> None:
        """Denying records ClaimDenied with the reason."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        given(policy).when(lambda p: p.deny_claim(claim.id, "Not covered", clock=CLOCK)).then(
            ClaimDenied(claim.id, policy.id, "Not covered")
        )
        assert policy.claim(claim.id).denial_reason == "Not covered"

    @pytest.mark.parametrize("first", ["approve", "deny"])
    def test_only_pending_claims_are_decided(self, first: str) -> None:
        """A decided claim cannot be approved again, nor denied after approval."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        if first == "approve":
            policy.approve_claim(claim.id, clock=CLOCK)
        else:
            policy.deny_claim(claim.id, "No", clock=CLOCK)
        commands: list[Callable[[InsurancePolicy], None]] = [
            lambda p: p.approve_claim(claim.id, clock=CLOCK),
            lambda p: p.deny_claim(claim.id, "No", clock=CLOCK),
        ]
        for command in commands:
            given(policy).when(command).then_raises(InvalidStateError, match="is not pending")

    def test_denial_needs_a_reason(self) -> None:
        """A claim is not denied without saying why."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        given(policy).when(lambda p: p.deny_claim(claim.id, "", clock=CLOCK)).then_raises(
            InvariantViolation, match="needs a reason"
        )

    def test_unknown_claim_is_named(self) -> None:
        """Deciding a claim the policy does not have names it."""
        missing = uuid4()
        given(active()).when(lambda p: p.approve_claim(missing, clock=CLOCK)).then_raises(
            UnknownClaim, match=f"Claim {missing} not found"
        )

    def test_pending_claims_are_still_decided_after_expiry(self) -> None:
        """Incidents inside the coverage are settled after the policy expired."""
        policy = active()
        claim = policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        policy.expire(clock=fixed_clock(COVERAGE.end))
        given(policy).when(lambda p: p.approve_claim(claim.id, clock=CLOCK)).then(ClaimApproved)


class TestLifecycle:
    def test_suspend_and_reinstate(self) -> None:
        """An active policy is suspended, then reinstated, each with its event."""
        policy = active()
        given(policy).when(lambda p: p.suspend("Unpaid premium", clock=CLOCK)).then(
            PolicySuspended(policy.id, "Unpaid premium")
        )
        given(policy).when(lambda p: p.reinstate(clock=CLOCK)).then(PolicyReinstated(policy.id))
        assert policy.status is PolicyStatus.ACTIVE

    def test_only_active_policies_are_suspended_and_only_suspended_reinstated(self) -> None:
        """Suspending a draft or reinstating an active policy is refused."""
        given(draft()).when(lambda p: p.suspend("x", clock=CLOCK)).then_raises(
            InvalidStateError, match="Cannot suspend policy .* in draft state"
        )
        given(active()).when(lambda p: p.reinstate(clock=CLOCK)).then_raises(
            InvalidStateError, match="Cannot reinstate policy .* in active state"
        )

    def test_no_reinstatement_after_coverage_ended(self) -> None:
        """A suspended policy whose coverage ended cannot be reinstated."""
        policy = active()
        policy.suspend("Unpaid", clock=CLOCK)
        given(policy).when(lambda p: p.reinstate(clock=fixed_clock(COVERAGE.end))).then_raises(
            InvalidStateError, match="coverage ended"
        )

    def test_expiry_only_once_coverage_has_ended(self) -> None:
        """Expiring early is refused; on the end date it records PolicyExpired."""
        given(active()).when(lambda p: p.expire(clock=CLOCK)).then_raises(
            InvalidStateError, match="cannot expire before its coverage ends on 2027-03-01"
        )
        policy = active()
        given(policy).when(lambda p: p.expire(clock=fixed_clock(COVERAGE.end))).then(
            PolicyExpired(policy.id, COVERAGE.end)
        )

    def test_renewal_extends_the_coverage_to_a_later_end(self) -> None:
        """A policy in force is renewed before its end; it then expires at the new end."""
        policy = active()
        renewed = DateRange(COVERAGE.start, date(2028, 3, 1))
        given(policy).when(lambda p: p.renew(date(2028, 3, 1), clock=CLOCK)).then(
            PolicyRenewed(policy.id, renewed)
        )
        assert policy.coverage_period == renewed
        assert policy.coverage_ends_at == datetime(2028, 3, 1, tzinfo=UTC)
        with pytest.raises(InvalidStateError, match="cannot expire before"):
            policy.expire(clock=fixed_clock(COVERAGE.end))

    def test_a_suspended_policy_is_renewed_too(self) -> None:
        """Suspension does not end the contract: it can be renewed."""
        policy = active()
        policy.suspend("Unpaid", clock=CLOCK)
        given(policy).when(lambda p: p.renew(date(2028, 3, 1), clock=CLOCK)).then(PolicyRenewed)

    def test_renewal_must_move_the_end_later(self) -> None:
        """A renewal to the current end, or before it, is refused."""
        given(active()).when(lambda p: p.renew(COVERAGE.end, clock=CLOCK)).then_raises(
            InvariantViolation, match="must end after the current coverage end 2027-03-01"
        )

    def test_no_renewal_of_a_draft_an_ended_or_a_cancelled_policy(self) -> None:
        """Only a policy in force, whose coverage still runs, is renewed."""
        later = date(2028, 3, 1)
        given(draft()).when(lambda p: p.renew(later, clock=CLOCK)).then_raises(
            InvalidStateError, match="Cannot renew policy .* in draft state"
        )
        given(active()).when(lambda p: p.renew(later, clock=fixed_clock(COVERAGE.end))).then_raises(
            InvalidStateError, match="its coverage ended on 2027-03-01"
        )
        cancelled = active()
        cancelled.cancel("Moved", clock=CLOCK)
        given(cancelled).when(lambda p: p.renew(later, clock=CLOCK)).then_raises(
            InvalidStateError, match="in cancelled state"
        )

    def test_cancellation_records_the_effective_date(self) -> None:
        """Cancelling records PolicyCancelled effective on the clock's today."""
        policy = active()
        given(policy).when(lambda p: p.cancel("Moved", clock=CLOCK)).then(
            PolicyCancelled(policy.id, "Moved", TODAY)
        )

    def test_cannot_cancel_with_pending_claims(self) -> None:
        """Pending claims block cancellation; the error counts them."""
        policy = active()
        policy.file_claim(uuid4(), usd("70.00"), "Hail", TODAY, clock=CLOCK)
        given(policy).when(lambda p: p.cancel("Moved", clock=CLOCK)).then_raises(
            InvalidStateError, match=r"with 1 pending claim\(s\) \(total 70.00 USD\)"
        )

    def test_cannot_cancel_twice_or_after_expiry(self) -> None:
        """A cancelled or expired policy cannot be cancelled."""
        policy = active()
        policy.cancel("Moved", clock=CLOCK)
        given(policy).when(lambda p: p.cancel("Again", clock=CLOCK)).then_raises(
            InvalidStateError, match="already cancelled"
        )
        expired = active()
        expired.expire(clock=fixed_clock(COVERAGE.end))
        given(expired).when(lambda p: p.cancel("Late", clock=CLOCK)).then_raises(
            InvalidStateError, match="has expired"
        )


class TestValues:
    def test_money_refuses_bad_amounts_and_currencies(self) -> None:
        """Negative, sub-cent and non-ISO values cannot exist."""
        for amount, currency, message in [
            ("-1", "USD", "non-negative"),
            ("1.001", "USD", "more than two decimals"),
            ("1", "usd", "ISO 4217"),
            ("1", "US", "ISO 4217"),
        ]:
            with pytest.raises(InvariantViolation, match=message):
                Money(Decimal(amount), currency)

    def test_money_arithmetic_keeps_currencies_apart(self) -> None:
        """Adding different currencies is refused; multiply rounds to the cent."""
        assert usd("1.00").add(usd("2.50")) == usd("3.50")
        assert usd("10.00").multiply(Decimal("0.333")) == usd("3.33")
        with pytest.raises(InvariantViolation, match="Cannot add USD and EUR"):
            usd("1.00").add(Money(Decimal(1), "EUR"))

    def test_date_range_is_ordered_and_half_open(self) -> None:
        """End after start; the end day itself is not covered."""
        with pytest.raises(InvariantViolation, match="must be after its start"):
            DateRange(date(2026, 1, 2), date(2026, 1, 1))
        assert COVERAGE.contains(COVERAGE.start)
        assert not COVERAGE.contains(COVERAGE.end)
        assert COVERAGE.days == 365
        assert COVERAGE.overlaps(DateRange(date(2027, 2, 28), date(2027, 4, 1)))
        assert not COVERAGE.overlaps(DateRange(COVERAGE.end, date(2027, 4, 1)))
