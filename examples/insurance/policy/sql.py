"""SQL persistence of the policy context: ORM models of policies and claims, an ORM mapper.

This is the design document's ``PolicyModel`` <-> ``InsurancePolicy`` translation as a
:class:`tactical.sqlalchemy.OrmMapper`: the models are plain SQLAlchemy declarative
classes, the mapper only translates (``to_model`` / ``to_domain``), and the unit of work
keeps the guarantees (SQLAlchemy's version check, the claims following the policy through
the relationship's cascade, the outbox in the same transaction, a row the domain refuses
reported as a :class:`~tactical.DeserializationError`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, cast
from uuid import UUID

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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
from tactical.sqlalchemy import OrmMapper, UtcDateTime


class Base(DeclarativeBase):
    """The policy context's ORM models."""


class PolicyModel(Base):
    """One row per policy: the root, with the holder and the money flattened into columns."""

    __tablename__ = "insurance_policies"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(20))
    holder_id: Mapped[UUID] = mapped_column(index=True)
    holder_name: Mapped[str] = mapped_column(sa.String(200))
    holder_dob: Mapped[date]
    street: Mapped[str] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(100))
    zip_code: Mapped[str] = mapped_column(sa.String(20))
    country: Mapped[str] = mapped_column(sa.String(2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    premium_amount: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    max_claim: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    coverage_start: Mapped[date]
    coverage_end: Mapped[date]
    claims: Mapped[list[ClaimModel]] = relationship(
        cascade="all, delete-orphan", order_by="ClaimModel.position", passive_deletes=True
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012  (SQLAlchemy's convention)


class ClaimModel(Base):
    """One row per claim, in filing order (``position``)."""

    __tablename__ = "insurance_claims"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    policy_id: Mapped[UUID] = mapped_column(
        sa.ForeignKey("insurance_policies.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))
    description: Mapped[str] = mapped_column(sa.Text)
    incident_date: Mapped[date]
    filed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(sa.String(20))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    denial_reason: Mapped[str | None] = mapped_column(sa.Text)


metadata = Base.metadata
"""The policy context's tables (add it to Alembic's ``target_metadata``)."""
policies = cast("sa.Table", PolicyModel.__table__)
claims = cast("sa.Table", ClaimModel.__table__)


def _cents(value: Any) -> Decimal:
    # SQLite returns NUMERIC as float-free Decimal through SQLAlchemy's Numeric type, but a
    # value written by another tool may carry more digits: normalise to cents.
    return Decimal(value).quantize(Decimal("0.01"))


class PolicyMapper(OrmMapper[InsurancePolicy, UUID, PolicyModel]):
    """``InsurancePolicy`` <-> ``PolicyModel`` + ``ClaimModel``."""

    aggregate_type = InsurancePolicy
    model = PolicyModel
    # The columns the finders compare (PolicyRepository.find_active_by_holder).
    columns = MappingProxyType({"holder.id": PolicyModel.holder_id, "status": PolicyModel.status})

    def to_model(self, aggregate: InsurancePolicy) -> PolicyModel:
        holder, address = aggregate.holder, aggregate.holder.address
        return PolicyModel(
            id=aggregate.id,
            status=aggregate.status.value,
            holder_id=holder.id,
            holder_name=holder.name,
            holder_dob=holder.date_of_birth,
            street=address.street,
            city=address.city,
            state=address.state,
            zip_code=address.zip_code,
            country=address.country,
            currency=aggregate.premium.currency,
            premium_amount=aggregate.premium.amount,
            max_claim=aggregate.max_claim_amount.amount,
            coverage_start=aggregate.coverage_period.start,
            coverage_end=aggregate.coverage_period.end,
            claims=[
                ClaimModel(
                    id=claim.id,
                    policy_id=aggregate.id,
                    position=position,
                    amount=claim.amount.amount,
                    description=claim.description,
                    incident_date=claim.incident_date,
                    filed_at=claim.filed_at,
                    status=claim.status.value,
                    decided_at=claim.decided_at,
                    denial_reason=claim.denial_reason,
                )
                for position, claim in enumerate(aggregate.claims)
            ],
        )

    def to_domain(self, model: PolicyModel) -> InsurancePolicy:
        currency = model.currency
        holder = Policyholder(
            model.holder_id,
            model.holder_name,
            Address(model.street, model.city, model.state, model.zip_code, model.country),
            model.holder_dob,
        )
        return InsurancePolicy(
            model.id,
            holder,
            Money(_cents(model.premium_amount), currency),
            DateRange(model.coverage_start, model.coverage_end),
            Money(_cents(model.max_claim), currency),
            PolicyStatus(model.status),
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
                for c in model.claims
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
        return [_active_policy(row) for row in rows]


def _active_policy(row: sa.Row[Any]) -> ActivePolicy:
    """A read-model row; one the domain refuses is a clear error naming it."""
    try:
        return ActivePolicy(
            row.id,
            row.holder_id,
            Money(_cents(row.premium_amount), row.currency),
            DateRange(row.coverage_start, row.coverage_end),
        )
    except (ValueError, TypeError, InvalidOperation) as error:
        raise DeserializationError(
            f"malformed row in {policies.name} for id {row.id}: {type(error).__name__}: {error}"
        ) from error
