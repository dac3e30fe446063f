"""Application services of the policy context: one transaction, one aggregate, one command.

Each service method opens the unit of work, loads one policy, runs one command and commits;
the unit of work then publishes the recorded events.

A policy expires through a durable timer, not through a caller remembering to: activating
a policy schedules a :class:`PolicyCoverageEnded` message for the end of its coverage in the
same transaction (under :func:`expiry_key`), renewing it schedules the message again under
that key (moving the deadline), and cancelling or expiring it by hand cancels the timer.
When the timer fires, :func:`expire_at_coverage_end` expires the policy, once, however
often the message is delivered. Commands on an existing policy are
re-run on a fresh copy if another transaction changed it meanwhile
(:func:`tactical.retry_on_conflict`), so the rules are always checked against current state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Protocol, TypeVar
from uuid import UUID, uuid4

from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock
from examples.insurance.policy.events import (
    PolicyCancelled,
    PolicyCoverageEnded,
    PolicyExpired,
    PolicyIssued,
    PolicyReinstated,
    PolicyRenewed,
    PolicySuspended,
)
from examples.insurance.policy.model import InsurancePolicy, Policyholder
from examples.insurance.policy.repository import PolicyRepository
from examples.insurance.policy.values import Address, DateRange, Money
from tactical import EventBus, SchedulingUnitOfWork, UnitOfWork, ValueObject, retry_on_conflict

T = TypeVar("T")


class ActivePolicy(ValueObject):
    """A row of the ``find_active_by_holder`` query: what a call-centre screen shows."""

    policy_id: UUID
    holder_id: UUID
    premium: Money
    coverage_period: DateRange


class PolicyQueries(Protocol):
    """Read-side queries of the policy context (they never return aggregates to change)."""

    def find_active_by_holder(self, holder_id: UUID) -> list[ActivePolicy]:
        """The policies in force for this holder, by coverage start."""
        ...


def expiry_key(policy_id: UUID) -> str:
    """The key of a policy's expiry timer: one timer per policy, replaced on renewal."""
    return f"insurance.policy-expiry:{policy_id}"


def schedule_expiry(uow: SchedulingUnitOfWork, policy: InsurancePolicy) -> None:
    """In the open ``uow``: (re)schedule ``policy``'s expiry for the end of its coverage."""
    end = policy.coverage_period.end
    uow.schedule(
        PolicyCoverageEnded(policy.id, end, occurred_at=policy.coverage_ends_at),
        at=policy.coverage_ends_at,
        key=expiry_key(policy.id),
    )


def expire_at_coverage_end(
    event: PolicyCoverageEnded, uow: UnitOfWork, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """In the open ``uow``: expire the policy whose expiry timer fired; whether it did.

    Idempotent, so a message delivered twice (or late) has one effect: a policy that is
    no longer in force (expired already, or cancelled) is left alone, and so is one renewed
    since the timer fired (its coverage no longer ends on ``event.coverage_end``; the
    renewal scheduled the timer of its new end). The caller commits (or, for a message
    consumer, the consumer does, together with its inbox record).

    Raises:
        tactical.AggregateNotFound: No policy has the event's id.
        tactical.InvalidStateError: By ``clock``, the coverage has not ended yet (a clock
            behind the timer worker's): the delivery should be retried later.
    """
    policy = uow.repository(InsurancePolicy).require(event.policy_id)
    if not policy.in_force or policy.coverage_period.end != event.coverage_end:
        return False
    policy.expire(clock=clock)
    return True


class PolicyService:
    """Issue policies and run their commands, each in its own transaction.

    Args:
        uow: The unit of work (in memory in unit tests, SQL in production); it stores the
            policies' expiry timers with them.
        clock: Where "today" comes from.
        new_id: Makes ids for new policies and claims (uuid4 by default).
    """

    def __init__(
        self,
        uow: SchedulingUnitOfWork,
        clock: Clock = SYSTEM_CLOCK,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._new_id = new_id

    def issue_policy(
        self,
        *,
        holder_id: UUID,
        holder_name: str,
        holder_address: Address,
        holder_date_of_birth: date,
        premium: Money,
        coverage_period: DateRange,
        max_claim_amount: Money,
    ) -> UUID:
        """Issue a new policy, in draft until :meth:`activate_policy`; returns its id."""
        holder = Policyholder(holder_id, holder_name, holder_address, holder_date_of_birth)
        policy = InsurancePolicy.draft(
            self._new_id(), holder, premium, coverage_period, max_claim_amount
        )
        with self._uow:
            self._uow.repository(InsurancePolicy).add(policy)
            self._uow.commit()
        return policy.id

    def activate_policy(self, policy_id: UUID) -> None:
        """Put a draft policy in force (publishes ``PolicyIssued``) and schedule its expiry."""

        def activate(policy: InsurancePolicy) -> None:
            policy.activate(self._clock)
            schedule_expiry(self._uow, policy)

        self._change(policy_id, activate)

    def renew_policy(self, policy_id: UUID, until: date) -> None:
        """Extend a policy in force to end on ``until`` (publishes ``PolicyRenewed``).

        Its expiry timer is scheduled again for the new end, in the same transaction.
        """

        def renew(policy: InsurancePolicy) -> None:
            policy.renew(until, clock=self._clock)
            schedule_expiry(self._uow, policy)

        self._change(policy_id, renew)

    def file_claim(
        self, policy_id: UUID, amount: Money, description: str, incident_date: date
    ) -> UUID:
        """File a claim on a policy; returns the new claim's id."""
        claim_id = self._new_id()
        self._change(
            policy_id,
            lambda p: p.file_claim(claim_id, amount, description, incident_date, clock=self._clock),
        )
        return claim_id

    def approve_claim(self, policy_id: UUID, claim_id: UUID) -> None:
        """Approve a pending claim."""
        self._change(policy_id, lambda p: p.approve_claim(claim_id, clock=self._clock))

    def deny_claim(self, policy_id: UUID, claim_id: UUID, reason: str) -> None:
        """Deny a pending claim."""
        self._change(policy_id, lambda p: p.deny_claim(claim_id, reason, clock=self._clock))

    def suspend_policy(self, policy_id: UUID, reason: str) -> None:
        """Suspend an active policy."""
        self._change(policy_id, lambda p: p.suspend(reason, clock=self._clock))

    def reinstate_policy(self, policy_id: UUID) -> None:
        """Reinstate a suspended policy."""
        self._change(policy_id, lambda p: p.reinstate(clock=self._clock))

    def expire_policy(self, policy_id: UUID) -> None:
        """Expire a policy whose coverage has ended, before its timer does; cancels the timer."""

        def expire(policy: InsurancePolicy) -> None:
            policy.expire(clock=self._clock)
            self._uow.cancel(expiry_key(policy.id))

        self._change(policy_id, expire)

    def cancel_policy(self, policy_id: UUID, reason: str) -> None:
        """Cancel a policy (publishes ``PolicyCancelled``) and its expiry timer."""

        def cancel(policy: InsurancePolicy) -> None:
            policy.cancel(reason, clock=self._clock)
            self._uow.cancel(expiry_key(policy.id))

        self._change(policy_id, cancel)

    def expire_at_coverage_end(self, event: PolicyCoverageEnded) -> bool:
        """Handle a fired expiry timer in its own transaction; whether the policy expired.

        See :func:`expire_at_coverage_end`: a duplicate or stale message changes nothing.
        """

        def transaction() -> bool:
            with self._uow:
                expired = expire_at_coverage_end(event, self._uow, self._clock)
                if expired:
                    self._uow.commit()
                return expired

        return retry_on_conflict(transaction)

    def get_policy(self, policy_id: UUID) -> InsurancePolicy:
        """A detached copy of the policy, for display (changes to it are not saved).

        Raises:
            tactical.AggregateNotFound: No policy has this id.
        """
        with self._uow:
            return self._uow.repository(InsurancePolicy).require(policy_id)

    def active_policies_of(self, holder_id: UUID) -> list[InsurancePolicy]:
        """Detached copies of the holder's policies in force, by coverage start."""
        with self._uow:
            return PolicyRepository(self._uow).find_active_by_holder(holder_id)

    def suspend_active_policies_of(self, holder_id: UUID, reason: str) -> list[UUID]:
        """Suspend every policy in force of the holder, each in its own transaction.

        One aggregate per transaction: each policy found is suspended and committed on
        its own (re-run on a fresh copy if another transaction changed it meanwhile).
        Returns the ids of the policies suspended.
        """
        suspended: list[UUID] = []
        while True:

            def suspend_next() -> UUID | None:
                with self._uow:
                    found = PolicyRepository(self._uow).find_active_by_holder(holder_id)
                    if not found:
                        return None
                    # Found, so tracked: the suspension is saved at commit.
                    found[0].suspend(reason, clock=self._clock)
                    self._uow.commit()
                    return found[0].id

            policy_id = retry_on_conflict(suspend_next)
            if policy_id is None:
                return suspended
            suspended.append(policy_id)

    def _change(self, policy_id: UUID, command: Callable[[InsurancePolicy], T]) -> T:
        def transaction() -> T:
            with self._uow:
                result = command(self._uow.repository(InsurancePolicy).require(policy_id))
                self._uow.commit()
                return result

        return retry_on_conflict(transaction)


class ActivePoliciesProjection:
    """An in-memory :class:`PolicyQueries` kept up to date from the published events.

    Subscribe it with :meth:`subscribe_to`; it is how a read model follows the domain
    without reading the aggregates' storage (the SQL adapter queries its tables instead).
    """

    def __init__(self) -> None:
        self._issued: dict[UUID, ActivePolicy] = {}
        self._active: set[UUID] = set()

    def subscribe_to(self, bus: EventBus) -> None:
        """Follow the policy events published on ``bus``."""
        bus.subscribe(PolicyIssued, self.on_issued)
        bus.subscribe(PolicySuspended, lambda e: self._active.discard(e.policy_id))
        bus.subscribe(PolicyReinstated, lambda e: self._active.add(e.policy_id))
        bus.subscribe(PolicyRenewed, self.on_renewed)
        bus.subscribe(PolicyExpired, lambda e: self._active.discard(e.policy_id))
        bus.subscribe(PolicyCancelled, lambda e: self._active.discard(e.policy_id))

    def on_issued(self, event: PolicyIssued) -> None:
        """A policy came into force."""
        self._issued[event.policy_id] = ActivePolicy(
            event.policy_id, event.holder_id, event.premium, event.coverage_period
        )
        self._active.add(event.policy_id)

    def on_renewed(self, event: PolicyRenewed) -> None:
        """A policy's coverage was extended."""
        issued = self._issued.get(event.policy_id)
        if issued is not None:
            self._issued[event.policy_id] = ActivePolicy(
                issued.policy_id, issued.holder_id, issued.premium, event.coverage_period
            )

    def find_active_by_holder(self, holder_id: UUID) -> list[ActivePolicy]:
        """The policies in force for this holder, by coverage start."""
        found = [
            self._issued[policy_id]
            for policy_id in self._active
            if self._issued[policy_id].holder_id == holder_id
        ]
        return sorted(found, key=lambda p: (p.coverage_period.start, str(p.policy_id)))
