"""The design document's ``PolicyRepository``: policies, and the finders the context needs.

A finder is a :class:`tactical.Query`, declared once here: the in-memory store evaluates
it on each policy's stored state, the SQL unit of work compiles it to SQL over the policy
mapper's columns. The policies it returns are tracked by the unit of work like those of
``get``: change one and commit, and it is saved.
"""

from __future__ import annotations

from uuid import UUID

from examples.insurance.policy.model import InsurancePolicy, PolicyStatus
from tactical import Field, Query, Repository, UnitOfWork


def active_by_holder(holder_id: UUID) -> Query[InsurancePolicy]:
    """The holder's policies in force, by coverage start."""
    return Query(
        InsurancePolicy,
        Field("holder.id") == holder_id,
        Field("status") == PolicyStatus.ACTIVE,
        order_by=("coverage_period.start",),
    )


class PolicyRepository:
    """The policies of one unit of work's transaction, with their finders.

    Args:
        uow: The unit of work, inside its ``with`` block.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._policies: Repository[InsurancePolicy, UUID] = uow.repository(InsurancePolicy)

    def require(self, policy_id: UUID) -> InsurancePolicy:
        """The policy with this id.

        Raises:
            tactical.AggregateNotFound: There is none.
        """
        return self._policies.require(policy_id)

    def add(self, policy: InsurancePolicy) -> None:
        """Store a new policy at commit."""
        self._policies.add(policy)

    def find_active_by_holder(self, holder_id: UUID) -> list[InsurancePolicy]:
        """The holder's policies in force, by coverage start (tracked: changes are saved)."""
        return self._policies.find(active_by_holder(holder_id))
