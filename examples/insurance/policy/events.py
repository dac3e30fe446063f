"""What happens to policies and claims: the policy context's published events.

These events are the context's public language: other contexts (billing) subscribe to them
through an anti-corruption layer and never see the aggregate itself.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from examples.insurance.policy.values import DateRange, Money
from tactical import DomainEvent


class PolicyIssued(DomainEvent):
    """A policy was activated: it is in force for its coverage period."""

    policy_id: UUID
    holder_id: UUID
    premium: Money
    coverage_period: DateRange


class ClaimFiled(DomainEvent):
    """A claim was filed against an active policy and awaits a decision."""

    claim_id: UUID
    policy_id: UUID
    amount: Money
    description: str
    incident_date: date


class ClaimApproved(DomainEvent):
    """A pending claim was approved for payment."""

    claim_id: UUID
    policy_id: UUID
    approved_amount: Money


class ClaimDenied(DomainEvent):
    """A pending claim was denied."""

    claim_id: UUID
    policy_id: UUID
    reason: str


class PolicySuspended(DomainEvent):
    """An active policy was suspended (no new claims until reinstated)."""

    policy_id: UUID
    reason: str


class PolicyReinstated(DomainEvent):
    """A suspended policy is active again."""

    policy_id: UUID


class PolicyRenewed(DomainEvent):
    """A policy in force was renewed: it now covers ``coverage_period`` (a later end)."""

    policy_id: UUID
    coverage_period: DateRange


class PolicyCoverageEnded(DomainEvent):
    """The coverage of a policy ended on ``coverage_end``: the policy's expiry timer fired.

    Not a change of a policy but the message the policy context schedules for itself when
    a policy comes into force (a durable timer, due at the start of ``coverage_end``); its
    handler expires the policy. ``coverage_end`` tells a timer that fired before a renewal
    moved the deadline from one that is still current.
    """

    policy_id: UUID
    coverage_end: date


class PolicyExpired(DomainEvent):
    """A policy reached the end of its coverage period."""

    policy_id: UUID
    expired_on: date


class PolicyCancelled(DomainEvent):
    """A policy was cancelled; billing stops from ``effective_date``."""

    policy_id: UUID
    reason: str
    effective_date: date
