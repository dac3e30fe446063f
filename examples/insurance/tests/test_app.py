"""Both contexts wired together: services, queries, and billing fed through commit and the bus."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.billing.acl import policy_reference
from examples.insurance.billing.model import Amount, PaymentSchedule, ScheduleStatus
from examples.insurance.policy.events import PolicyRenewed
from examples.insurance.policy.model import ClaimStatus, PolicyStatus
from examples.insurance.policy.values import Address, Money
from examples.insurance.tests.conftest import COVERAGE, TODAY, fixed_clock, usd
from tactical import (
    AggregateNotFound,
    DomainError,
    DomainEvent,
    InvalidStateError,
    InvariantViolation,
)

Factory = Callable[[], app.Insurance]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_insurance(request: pytest.FixtureRequest) -> Factory:
    """Builds the application in memory, on a SQLite file and on PostgreSQL."""
    clock = fixed_clock()
    if request.param == "memory":
        return lambda: app.in_memory(clock)
    engine: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
    return lambda: app.on_database(engine, clock)


def issue(insurance: app.Insurance, holder_id: UUID | None = None) -> UUID:
    return insurance.policies.issue_policy(
        holder_id=holder_id or uuid4(),
        holder_name="Grace Hopper",
        holder_address=Address("1 Navy Way", "Arlington", "VA", "22202"),
        holder_date_of_birth=date(1980, 5, 17),
        premium=usd("42.50"),
        coverage_period=COVERAGE,
        max_claim_amount=usd("1000.00"),
    )


class TestPolicyServices:
    def test_policy_lifecycle_through_services(self, make_insurance: Factory) -> None:
        """Issue, activate, file, approve, deny and cancel, each in its own transaction."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        insurance.policies.activate_policy(policy_id)
        approved = insurance.policies.file_claim(policy_id, usd("100.00"), "Hail", TODAY)
        denied = insurance.policies.file_claim(policy_id, usd("50.00"), "Bicycle", TODAY)
        insurance.policies.approve_claim(policy_id, approved)
        insurance.policies.deny_claim(policy_id, denied, "Excluded")
        insurance.policies.cancel_policy(policy_id, "Moved")

        policy = insurance.policies.get_policy(policy_id)
        assert policy.status is PolicyStatus.CANCELLED
        assert [(c.id, c.status) for c in policy.claims] == [
            (approved, ClaimStatus.APPROVED),
            (denied, ClaimStatus.DENIED),
        ]
        assert policy.claim(denied).denial_reason == "Excluded"
        assert policy.version == 7

    def test_suspend_reinstate_and_expire(self, make_insurance: Factory) -> None:
        """The lifecycle services persist each status."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        insurance.policies.activate_policy(policy_id)
        insurance.policies.suspend_policy(policy_id, "Unpaid premium")
        assert insurance.policies.get_policy(policy_id).status is PolicyStatus.SUSPENDED
        insurance.policies.reinstate_policy(policy_id)
        assert insurance.policies.get_policy(policy_id).status is PolicyStatus.ACTIVE
        with pytest.raises(DomainError, match="cannot expire before"):
            insurance.policies.expire_policy(policy_id)

    def test_refused_command_leaves_the_stored_policy_unchanged(
        self, make_insurance: Factory
    ) -> None:
        """A command refused by a rule rolls the whole transaction back."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        insurance.policies.activate_policy(policy_id)
        insurance.policies.file_claim(policy_id, usd("800.00"), "Flood", TODAY)
        before = insurance.policies.get_policy(policy_id)
        with pytest.raises(InvariantViolation, match="exceed maximum"):
            insurance.policies.file_claim(policy_id, usd("300.00"), "Wind", TODAY)
        after = insurance.policies.get_policy(policy_id)
        assert after.version == before.version
        assert len(after.claims) == 1

    def test_unknown_policy_is_named(self, make_insurance: Factory) -> None:
        """Commanding a policy that does not exist raises AggregateNotFound with its id."""
        missing = uuid4()
        with pytest.raises(AggregateNotFound, match=str(missing)):
            make_insurance().policies.activate_policy(missing)

    def test_find_active_by_holder(self, make_insurance: Factory) -> None:
        """Only the holder's policies in force are found; drafts and cancelled ones are not."""
        insurance = make_insurance()
        holder_id = uuid4()
        in_force, cancelled, draft, someone_else = (
            issue(insurance, holder_id),
            issue(insurance, holder_id),
            issue(insurance, holder_id),
            issue(insurance),
        )
        for policy_id in (in_force, cancelled, someone_else):
            insurance.policies.activate_policy(policy_id)
        insurance.policies.cancel_policy(cancelled, "Duplicate")

        found = insurance.queries.find_active_by_holder(holder_id)
        assert [p.policy_id for p in found] == [in_force]
        assert found[0].premium == usd("42.50")
        assert found[0].coverage_period == COVERAGE
        assert draft not in {p.policy_id for p in found}


class TestPolicyFinders:
    def test_active_policies_of_a_holder_are_found_as_aggregates(
        self, make_insurance: Factory
    ) -> None:
        """PolicyRepository.find_active_by_holder: the holder's policies in force, whole."""
        insurance = make_insurance()
        holder_id = uuid4()
        in_force, cancelled, draft, someone_else = (
            issue(insurance, holder_id),
            issue(insurance, holder_id),
            issue(insurance, holder_id),
            issue(insurance),
        )
        for policy_id in (in_force, cancelled, someone_else):
            insurance.policies.activate_policy(policy_id)
        insurance.policies.cancel_policy(cancelled, "Duplicate")

        found = insurance.policies.active_policies_of(holder_id)
        assert [p.id for p in found] == [in_force]
        assert (found[0].status, found[0].holder.id, found[0].version) == (
            PolicyStatus.ACTIVE,
            holder_id,
            2,
        )
        assert draft not in {p.id for p in found}

    def test_found_policies_are_changed_and_saved(self, make_insurance: Factory) -> None:
        """Suspending a holder's policies changes the found aggregates and commits each."""
        insurance = make_insurance()
        holder_id = uuid4()
        first, second, other = (
            issue(insurance, holder_id),
            issue(insurance, holder_id),
            issue(insurance),
        )
        for policy_id in (first, second, other):
            insurance.policies.activate_policy(policy_id)

        suspended = insurance.policies.suspend_active_policies_of(holder_id, "Unpaid premium")
        assert sorted(suspended) == sorted([first, second])
        assert insurance.policies.active_policies_of(holder_id) == []
        assert insurance.policies.get_policy(first).status is PolicyStatus.SUSPENDED
        assert insurance.policies.get_policy(other).status is PolicyStatus.ACTIVE


class TestBilling:
    def test_policy_issued_starts_a_monthly_schedule(self, make_insurance: Factory) -> None:
        """Activation commits, PolicyIssued is published, billing starts its own schedule."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        assert insurance.billing.schedule_for(policy_reference(policy_id)) is None
        insurance.policies.activate_policy(policy_id)

        schedule = insurance.billing.schedule_for(policy_reference(policy_id))
        assert schedule is not None
        assert schedule.installment == Amount(4250, "USD")
        installments = schedule.installments()
        assert len(installments) == 12
        assert [i.due_on for i in installments[:3]] == [
            date(2026, 3, 1),
            date(2026, 4, 1),
            date(2026, 5, 1),
        ]

    def test_policy_cancelled_stops_the_schedule(self, make_insurance: Factory) -> None:
        """Cancellation stops billing from its effective date."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        insurance.policies.activate_policy(policy_id)
        insurance.policies.cancel_policy(policy_id, "Moved")

        schedule = insurance.billing.schedule_for(policy_reference(policy_id))
        assert schedule is not None
        assert schedule.status is ScheduleStatus.STOPPED
        assert schedule.stopped_from == TODAY
        assert [i.due_on for i in schedule.installments()] == [date(2026, 3, 1)]
        assert schedule.total_due() == Amount(4250, "USD")

    def test_policy_renewed_extends_the_schedule(self, make_insurance: Factory) -> None:
        """A renewal bills until the new end of coverage; its redelivery changes nothing."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        events: list[DomainEvent] = []
        insurance.bus.subscribe(DomainEvent, events.append)
        insurance.policies.activate_policy(policy_id)
        insurance.policies.renew_policy(policy_id, date(2028, 3, 1))

        schedule = insurance.billing.schedule_for(policy_reference(policy_id))
        assert schedule is not None
        assert schedule.ends_before == date(2028, 3, 1)
        assert len(schedule.installments()) == 24
        renewed = next(e for e in events if isinstance(e, PolicyRenewed))
        insurance.bus.publish(renewed)
        again = insurance.billing.schedule_for(policy_reference(policy_id))
        assert again is not None
        assert again.version == schedule.version == 2

    def test_refused_activation_starts_no_billing(self, make_insurance: Factory) -> None:
        """Nothing is published when the command fails: no schedule appears."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        insurance.policies.activate_policy(policy_id)
        with pytest.raises(DomainError):
            insurance.policies.activate_policy(policy_id)
        published: list[DomainEvent] = []
        insurance.bus.subscribe(DomainEvent, published.append)
        with pytest.raises(DomainError):
            insurance.policies.activate_policy(policy_id)
        assert published == []

    def test_redelivered_policy_issued_bills_once(self, make_insurance: Factory) -> None:
        """The billing side is idempotent: the same event twice makes one schedule."""
        insurance = make_insurance()
        policy_id = issue(insurance)
        events: list[DomainEvent] = []
        insurance.bus.subscribe(DomainEvent, events.append)
        insurance.policies.activate_policy(policy_id)
        issued = events[0]
        insurance.bus.publish(issued)
        schedule = insurance.billing.schedule_for(policy_reference(policy_id))
        assert schedule is not None
        assert schedule.version == 1


class TestPaymentSchedule:
    def test_extend_bills_longer_and_refuses_a_stopped_or_shorter_schedule(self) -> None:
        """Extending moves the end later; a stopped schedule or an earlier end is refused."""
        schedule = PaymentSchedule.start(
            "policy:1", Amount(1000, "USD"), COVERAGE.start, COVERAGE.end
        )
        schedule.extend(date(2027, 6, 1))
        assert len(schedule.installments()) == 15
        with pytest.raises(InvariantViolation, match="needs an end after 2027-06-01"):
            schedule.extend(date(2027, 6, 1))
        schedule.stop(TODAY)
        with pytest.raises(InvalidStateError, match="cannot be extended"):
            schedule.extend(date(2028, 1, 1))


class TestConcurrency:
    @pytest.mark.parametrize(
        "engine_name",
        ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)],
    )
    def test_concurrent_claims_never_exceed_the_maximum_together(
        self, engine_name: str, request: pytest.FixtureRequest
    ) -> None:
        """Two clerks file claims at once: a conflicting commit is retried and rechecked."""
        engine: sa.Engine = request.getfixturevalue(engine_name)
        clock = fixed_clock()
        setup = app.on_database(engine, clock)
        policy_id = issue(setup)
        setup.policies.activate_policy(policy_id)

        start = threading.Barrier(2)
        outcomes: list[str] = []

        def clerk(amount: str) -> None:
            insurance = app.on_database(engine, clock)  # its own units of work
            start.wait()
            try:
                insurance.policies.file_claim(policy_id, usd(amount), "Storm", TODAY)
                outcomes.append("filed")
            except InvariantViolation:
                outcomes.append("refused")

        threads = [threading.Thread(target=clerk, args=(a,)) for a in ("800.00", "300.00")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        policy = setup.policies.get_policy(policy_id)
        assert sorted(outcomes) == ["filed", "refused"]
        assert len(policy.claims) == 1
        assert policy.pending_total().amount <= Decimal("1000.00")
        assert policy.pending_total() in (usd("800.00"), usd("300.00"))
        assert policy.pending_total() != Money.zero("USD")
