"""The InsurancePolicy aggregate: a policy, its holder and its claims, with every rule.

All changes go through the root's commands, which check the rules and record an event.
Commands that depend on time take a :class:`tactical.Clock` (the system clock by default),
so tests move the date instead of depending on today.
"""

from __future__ import annotations

import enum
from dataclasses import field
from datetime import date, datetime
from uuid import UUID

from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock, start_of, today
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
from examples.insurance.policy.values import Address, DateRange, Money
from tactical import AggregateRoot, DomainError, Entity, InvalidStateError, InvariantViolation

MINIMUM_HOLDER_AGE = 18


class PolicyStatus(enum.Enum):
    """Where a policy is in its life: draft -> active <-> suspended -> expired | cancelled."""

    DRAFT = "draft"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ClaimStatus(enum.Enum):
    """A claim awaits a decision (pending), or was approved or denied."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class UnknownClaim(DomainError):
    """A command names a claim that the policy does not have."""


class Policyholder(Entity[UUID]):
    """The person insured by a policy (a child entity of the policy)."""

    name: str
    address: Address
    date_of_birth: date

    def age_on(self, day: date) -> int:
        """Age in whole years on ``day``."""
        had_birthday = (day.month, day.day) >= (self.date_of_birth.month, self.date_of_birth.day)
        return day.year - self.date_of_birth.year - (0 if had_birthday else 1)


class Claim(Entity[UUID]):
    """A request for payment for an incident covered by the policy (a child entity)."""

    amount: Money
    description: str
    incident_date: date
    filed_at: datetime
    status: ClaimStatus = ClaimStatus.PENDING
    decided_at: datetime | None = None
    denial_reason: str | None = None


class InsurancePolicy(AggregateRoot[UUID]):
    """Aggregate root for insurance policies: the consistency boundary for claims.

    Rules:
        - only a draft policy can be activated, and only for a holder aged 18 or more;
        - claims are filed only on active policies, in the premium's currency, for an
          incident inside the coverage period and not in the future;
        - no claim, and no total of pending claims, may exceed the maximum claim amount;
        - only pending claims are approved or denied;
        - active policies can be suspended, suspended ones reinstated (within coverage);
        - a policy in force (active or suspended) can be renewed before its coverage ends,
          to a later end;
        - a policy expires once its coverage period has ended;
        - a policy with pending claims cannot be cancelled, nor cancelled twice, nor once
          expired.
    """

    holder: Policyholder
    premium: Money
    coverage_period: DateRange
    max_claim_amount: Money
    status: PolicyStatus = PolicyStatus.DRAFT
    claims: list[Claim] = field(default_factory=list[Claim])

    @classmethod
    def draft(
        cls,
        policy_id: UUID,
        holder: Policyholder,
        premium: Money,
        coverage_period: DateRange,
        max_claim_amount: Money,
    ) -> InsurancePolicy:
        """A new policy in draft, not yet in force.

        Raises:
            InvariantViolation: The maximum claim amount is not in the premium's currency.
        """
        if max_claim_amount.currency != premium.currency:
            raise InvariantViolation(
                f"Maximum claim amount {max_claim_amount} must be in the premium's currency "
                f"{premium.currency}"
            )
        return cls(policy_id, holder, premium, coverage_period, max_claim_amount)

    # --- queries -------------------------------------------------------------------------

    @property
    def pending_claims(self) -> list[Claim]:
        """Claims awaiting a decision, in filing order."""
        return [claim for claim in self.claims if claim.status is ClaimStatus.PENDING]

    def pending_total(self) -> Money:
        """The sum of all pending claims."""
        total = Money.zero(self.premium.currency)
        for claim in self.pending_claims:
            total = total.add(claim.amount)
        return total

    @property
    def coverage_ends_at(self) -> datetime:
        """The instant the coverage is over: the start of the coverage period's end day, UTC."""
        return start_of(self.coverage_period.end)

    @property
    def in_force(self) -> bool:
        """Whether the policy is active or suspended (not draft, expired or cancelled)."""
        return self.status in (PolicyStatus.ACTIVE, PolicyStatus.SUSPENDED)

    def claim(self, claim_id: UUID) -> Claim:
        """The claim with this id.

        Raises:
            UnknownClaim: The policy has no such claim.
        """
        for claim in self.claims:
            if claim.id == claim_id:
                return claim
        raise UnknownClaim(f"Claim {claim_id} not found in policy {self.id}")

    # --- commands ------------------------------------------------------------------------

    def activate(self, clock: Clock = SYSTEM_CLOCK) -> None:
        """Put a draft policy in force; records :class:`PolicyIssued`."""
        self._require_status("activate", PolicyStatus.DRAFT)
        on = today(clock)
        age = self.holder.age_on(on)
        if age < MINIMUM_HOLDER_AGE:
            raise InvariantViolation(
                f"Policyholder must be at least {MINIMUM_HOLDER_AGE} years old; "
                f"{self.holder.name} is {age} on {on}"
            )
        if on >= self.coverage_period.end:
            raise InvalidStateError(
                f"Cannot activate policy {self.id}: its coverage ended on "
                f"{self.coverage_period.end}"
            )
        self.status = PolicyStatus.ACTIVE
        self.record(
            PolicyIssued(
                self.id,
                self.holder.id,
                self.premium,
                self.coverage_period,
                occurred_at=clock.now(),
            )
        )

    def file_claim(
        self,
        claim_id: UUID,
        amount: Money,
        description: str,
        incident_date: date | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Claim:
        """File a claim (for an incident today unless ``incident_date`` says otherwise).

        Records :class:`ClaimFiled` and returns the new pending claim.
        """
        if self.status is not PolicyStatus.ACTIVE:
            raise InvalidStateError(
                f"Claims can only be filed on active policies; policy {self.id} is "
                f"{self.status.value}"
            )
        on = today(clock)
        incident = on if incident_date is None else incident_date
        if amount.currency != self.premium.currency:
            raise InvariantViolation(
                f"Claim currency {amount.currency} must match policy currency "
                f"{self.premium.currency}"
            )
        if amount.exceeds(self.max_claim_amount):
            raise InvariantViolation(
                f"Claim amount {amount} exceeds the policy maximum {self.max_claim_amount}"
            )
        if not description.strip():
            raise InvariantViolation("A claim needs a description of the incident")
        if incident > on:
            raise InvariantViolation(f"Incident date {incident} is in the future (today is {on})")
        if not self.coverage_period.contains(incident):
            raise InvariantViolation(
                f"Incident date {incident} is outside the coverage period {self.coverage_period}"
            )
        if any(claim.id == claim_id for claim in self.claims):
            raise InvariantViolation(f"Claim {claim_id} was already filed on policy {self.id}")
        pending = self.pending_total()
        if pending.add(amount).exceeds(self.max_claim_amount):
            raise InvariantViolation(
                f"Total pending claims {pending.add(amount)} would exceed maximum "
                f"{self.max_claim_amount}"
            )
        now = clock.now()
        claim = Claim(claim_id, amount, description, incident, filed_at=now)
        self.claims.append(claim)
        self.record(ClaimFiled(claim_id, self.id, amount, description, incident, occurred_at=now))
        return claim

    def approve_claim(self, claim_id: UUID, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Approve a pending claim for its full amount; records :class:`ClaimApproved`."""
        claim = self._pending_claim(claim_id, "approve")
        now = clock.now()
        claim.status = ClaimStatus.APPROVED
        claim.decided_at = now
        self.record(ClaimApproved(claim_id, self.id, claim.amount, occurred_at=now))

    def deny_claim(self, claim_id: UUID, reason: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Deny a pending claim, saying why; records :class:`ClaimDenied`."""
        if not reason.strip():
            raise InvariantViolation("Denying a claim needs a reason")
        claim = self._pending_claim(claim_id, "deny")
        now = clock.now()
        claim.status = ClaimStatus.DENIED
        claim.decided_at = now
        claim.denial_reason = reason
        self.record(ClaimDenied(claim_id, self.id, reason, occurred_at=now))

    def suspend(self, reason: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Suspend an active policy (no new claims); records :class:`PolicySuspended`."""
        self._require_status("suspend", PolicyStatus.ACTIVE)
        self.status = PolicyStatus.SUSPENDED
        self.record(PolicySuspended(self.id, reason, occurred_at=clock.now()))

    def reinstate(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Make a suspended policy active again; records :class:`PolicyReinstated`."""
        self._require_status("reinstate", PolicyStatus.SUSPENDED)
        if today(clock) >= self.coverage_period.end:
            raise InvalidStateError(
                f"Cannot reinstate policy {self.id}: its coverage ended on "
                f"{self.coverage_period.end}"
            )
        self.status = PolicyStatus.ACTIVE
        self.record(PolicyReinstated(self.id, occurred_at=clock.now()))

    def renew(self, until: date, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Extend the coverage of a policy in force to end on ``until``; records :class:`PolicyRenewed`.

        Raises:
            InvalidStateError: The policy is not in force, or its coverage has ended already.
            InvariantViolation: ``until`` is not after the current end of coverage.
        """
        self._require_status("renew", PolicyStatus.ACTIVE, PolicyStatus.SUSPENDED)
        on = today(clock)
        if on >= self.coverage_period.end:
            raise InvalidStateError(
                f"Cannot renew policy {self.id}: its coverage ended on {self.coverage_period.end}"
            )
        if until <= self.coverage_period.end:
            raise InvariantViolation(
                f"A renewal must end after the current coverage end {self.coverage_period.end}, "
                f"got {until}"
            )
        self.coverage_period = DateRange(self.coverage_period.start, until)
        self.record(PolicyRenewed(self.id, self.coverage_period, occurred_at=clock.now()))

    def expire(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """End a policy whose coverage period is over; records :class:`PolicyExpired`.

        Pending claims stay pending: incidents inside the coverage are still decided.
        """
        self._require_status("expire", PolicyStatus.ACTIVE, PolicyStatus.SUSPENDED)
        on = today(clock)
        if on < self.coverage_period.end:
            raise InvalidStateError(
                f"Policy {self.id} cannot expire before its coverage ends on "
                f"{self.coverage_period.end} (today is {on})"
            )
        self.status = PolicyStatus.EXPIRED
        self.record(PolicyExpired(self.id, on, occurred_at=clock.now()))

    def cancel(self, reason: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """Cancel the policy from today; records :class:`PolicyCancelled`."""
        if self.status is PolicyStatus.CANCELLED:
            raise InvalidStateError(f"Policy {self.id} is already cancelled")
        if self.status is PolicyStatus.EXPIRED:
            raise InvalidStateError(f"Policy {self.id} has expired and cannot be cancelled")
        pending = self.pending_claims
        if pending:
            raise InvalidStateError(
                f"Cannot cancel policy with {len(pending)} pending claim(s) "
                f"(total {self.pending_total()})"
            )
        self.status = PolicyStatus.CANCELLED
        self.record(PolicyCancelled(self.id, reason, today(clock), occurred_at=clock.now()))

    # --- helpers -------------------------------------------------------------------------

    def _require_status(self, action: str, *allowed: PolicyStatus) -> None:
        if self.status not in allowed:
            raise InvalidStateError(
                f"Cannot {action} policy {self.id} in {self.status.value} state"
            )

    def _pending_claim(self, claim_id: UUID, action: str) -> Claim:
        if self.status in (PolicyStatus.DRAFT, PolicyStatus.CANCELLED):
            raise InvalidStateError(
                f"Cannot {action} claims on policy {self.id} in {self.status.value} state"
            )
        claim = self.claim(claim_id)
        if claim.status is not ClaimStatus.PENDING:
            raise InvalidStateError(
                f"Claim {claim_id} is not pending (it was {claim.status.value})"
            )
        return claim
