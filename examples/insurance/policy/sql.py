"""SQL persistence of the policy context: policies and claims tables, a relational mapper.

This is the design document's ``PolicyModel`` <-> ``InsurancePolicy`` translation as a
:class:`tactical.sqlalchemy.RelationalMapper`: the unit of work keeps the guarantees
(version check, outbox in the same transaction), the mapper only translates rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar
from uuid import UUID

import sqlalchemy as sa
from examples.insurance.policy.model import (
    Claim,
    ClaimStatus,
    InsurancePolicy,
    Policyholder,
    PolicyStatus,
)
from examples.insurance.policy.services import ActivePolicy
from examples.insurance.policy.values import Address, DateRange, Money
from tactical import DeserializationError
from tactical.sqlalchemy import RelationalMapper, UtcDateTime

T = TypeVar("T")

metadata = sa.MetaData()
"""The policy context's tables (add it to Alembic's ``target_metadata``)."""

policies = sa.Table(
    "insurance_policies",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("holder_id", sa.Uuid, nullable=False, index=True),
    sa.Column("holder_name", sa.String(200), nullable=False),
    sa.Column("holder_dob", sa.Date, nullable=False),
    sa.Column("street", sa.String(200), nullable=False),
    sa.Column("city", sa.String(100), nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("zip_code", sa.String(20), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("premium_amount", sa.Numeric(14, 2), nullable=False),
    sa.Column("max_claim", sa.Numeric(14, 2), nullable=False),
    sa.Column("coverage_start", sa.Date, nullable=False),
    sa.Column("coverage_end", sa.Date, nullable=False),
)

claims = sa.Table(
    "insurance_claims",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "policy_id",
        sa.Uuid,
        sa.ForeignKey("insurance_policies.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("amount", sa.Numeric(14, 2), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("incident_date", sa.Date, nullable=False),
    sa.Column("filed_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("denial_reason", sa.Text, nullable=True),
)


def _cents(value: Any) -> Decimal:
    # SQLite returns NUMERIC as float-free Decimal through SQLAlchemy's Numeric type, but a
    # value written by another tool may carry more digits: normalise to cents.
    return Decimal(value).quantize(Decimal("0.01"))


class PolicyMapper(RelationalMapper[InsurancePolicy, UUID]):
    """``InsurancePolicy`` <-> ``insurance_policies`` + ``insurance_claims``."""

    aggregate_type = InsurancePolicy
    table = policies
    # The columns the finders compare (PolicyRepository.find_active_by_holder).
    columns = MappingProxyType({"holder.id": policies.c.holder_id, "status": policies.c.status})

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> InsurancePolicy | None:
        row = connection.execute(
            sa.select(policies).where(policies.c.id == aggregate_id)
        ).one_or_none()
        if row is None:
            return None
        claim_rows = connection.execute(
            sa.select(claims).where(claims.c.policy_id == aggregate_id).order_by(claims.c.position)
        ).all()
        return _decoded(policies.name, aggregate_id, lambda: _policy(row, claim_rows))

    def insert(self, connection: sa.Connection, aggregate: InsurancePolicy) -> None:
        connection.execute(
            policies.insert().values(id=aggregate.id, version=aggregate.version, **_row(aggregate))
        )
        self._insert_claims(connection, aggregate)

    def update(self, connection: sa.Connection, aggregate: InsurancePolicy) -> None:
        connection.execute(
            policies.update().where(policies.c.id == aggregate.id).values(**_row(aggregate))
        )
        connection.execute(claims.delete().where(claims.c.policy_id == aggregate.id))
        self._insert_claims(connection, aggregate)

    def delete(self, connection: sa.Connection, aggregate: InsurancePolicy) -> None:
        connection.execute(claims.delete().where(claims.c.policy_id == aggregate.id))
        connection.execute(policies.delete().where(policies.c.id == aggregate.id))

    @staticmethod
    def _insert_claims(connection: sa.Connection, policy: InsurancePolicy) -> None:
        if not policy.claims:
            return
        connection.execute(
            claims.insert(),
            [
                {
                    "id": claim.id,
                    "policy_id": policy.id,
                    "position": position,
                    "amount": claim.amount.amount,
                    "description": claim.description,
                    "incident_date": claim.incident_date,
                    "filed_at": claim.filed_at,
                    "status": claim.status.value,
                    "decided_at": claim.decided_at,
                    "denial_reason": claim.denial_reason,
                }
                for position, claim in enumerate(policy.claims)
            ],
        )


class SqlPolicyQueries:
    """:class:`~examples.insurance.policy.services.PolicyQueries` straight from the tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def find_active_by_holder(self, holder_id: UUID) -> list[ActivePolicy]:
        """The policies in force for this holder, by coverage start."""
        query = (
            sa.select(policies)
            .where(
                policies.c.holder_id == holder_id,
                policies.c.status == PolicyStatus.ACTIVE.value,
            )
            .order_by(policies.c.coverage_start, policies.c.id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_decoded(policies.name, row.id, partial(_active_policy, row)) for row in rows]


def _active_policy(row: sa.Row[Any]) -> ActivePolicy:
    return ActivePolicy(
        row.id,
        row.holder_id,
        Money(_cents(row.premium_amount), row.currency),
        DateRange(row.coverage_start, row.coverage_end),
    )


def _row(policy: InsurancePolicy) -> dict[str, Any]:
    holder, address = policy.holder, policy.holder.address
    return {
        "status": policy.status.value,
        "holder_id": holder.id,
        "holder_name": holder.name,
        "holder_dob": holder.date_of_birth,
        "street": address.street,
        "city": address.city,
        "state": address.state,
        "zip_code": address.zip_code,
        "country": address.country,
        "currency": policy.premium.currency,
        "premium_amount": policy.premium.amount,
        "max_claim": policy.max_claim_amount.amount,
        "coverage_start": policy.coverage_period.start,
        "coverage_end": policy.coverage_period.end,
    }


def _policy(row: sa.Row[Any], claim_rows: Sequence[sa.Row[Any]]) -> InsurancePolicy:
    currency = row.currency
    holder = Policyholder(
        row.holder_id,
        row.holder_name,
        Address(row.street, row.city, row.state, row.zip_code, row.country),
        row.holder_dob,
    )
    return InsurancePolicy(
        row.id,
        holder,
        Money(_cents(row.premium_amount), currency),
        DateRange(row.coverage_start, row.coverage_end),
        Money(_cents(row.max_claim), currency),
        PolicyStatus(row.status),
        [
            Claim(
                c.id,
                Money(_cents(c.amount), currency),
                c.description,
                c.incident_date,
                c.filed_at,
                ClaimStatus(c.status),
                c.decided_at,
                c.denial_reason,
            )
            for c in claim_rows
        ],
        version=row.version,
    )


def _decoded(table: str, row_id: object, build: Callable[[], T]) -> T:
    """Build a domain object from a row; a row the domain refuses is a clear error."""
    try:
        return build()
    except (ValueError, TypeError, InvalidOperation) as error:
        raise DeserializationError(
            f"malformed row in {table} for id {row_id}: {type(error).__name__}: {error}"
        ) from error
