"""The ORM mapping of policies and claims, and billing's document storage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.billing.acl import policy_reference
from examples.insurance.billing.model import PaymentSchedule
from examples.insurance.policy.model import InsurancePolicy
from examples.insurance.policy.repository import PolicyRepository
from examples.insurance.policy.sql import PolicyMapper, claims, policies
from examples.insurance.tests.conftest import TODAY, create_active_policy, fixed_clock, usd
from tactical import ConcurrencyError, DeserializationError, EventBus
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, outbox_table
from tactical.testing import structural_state

CLOCK = fixed_clock()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'insurance.sqlite3'}")
    app.on_database(engine, CLOCK)
    yield engine
    engine.dispose()


def policy_with_every_kind_of_claim() -> InsurancePolicy:
    policy = create_active_policy(clock=CLOCK)
    approved = policy.file_claim(uuid4(), usd("100.00"), "Hail", TODAY, clock=CLOCK)
    denied = policy.file_claim(
        uuid4(), usd("20.50"), "Bike", TODAY - timedelta(days=3), clock=CLOCK
    )
    policy.file_claim(uuid4(), usd("7.25"), "Tile", TODAY, clock=CLOCK)
    policy.approve_claim(approved.id, clock=CLOCK)
    policy.deny_claim(denied.id, "Excluded", clock=CLOCK)
    return policy


class TestPolicyMapper:
    def test_round_trip_preserves_the_whole_aggregate(self, engine: sa.Engine) -> None:
        """Holder, money, period, status and every claim field come back as they went in."""
        uow = SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()])
        original = policy_with_every_kind_of_claim()
        with uow:
            uow.repository(InsurancePolicy).add(original)
            uow.commit()
        with uow:
            loaded = uow.repository(InsurancePolicy).require(original.id)
        assert loaded.version == 1
        assert structural_state(loaded) == structural_state(original)

    def test_policies_live_in_their_own_tables(self, engine: sa.Engine) -> None:
        """Mapped policies are rows of insurance_policies and insurance_claims, not documents."""
        uow = SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()])
        policy = policy_with_every_kind_of_claim()
        with uow:
            uow.repository(InsurancePolicy).add(policy)
            uow.commit()
        with engine.connect() as connection:
            row = connection.execute(sa.select(policies)).one()
            claim_count = connection.execute(sa.select(sa.func.count()).select_from(claims))
            documents = connection.execute(sa.select(aggregates_table)).all()
        assert (row.id, row.status, row.version) == (policy.id, "active", 1)
        assert claim_count.scalar_one() == 3
        assert documents == []

    def test_changes_update_rows_and_bump_the_version(self, engine: sa.Engine) -> None:
        """A command on a loaded policy rewrites its claims and bumps the version column."""
        uow = SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()])
        policy = policy_with_every_kind_of_claim()
        with uow:
            uow.repository(InsurancePolicy).add(policy)
            uow.commit()
        pending = policy.pending_claims[0].id
        with uow:
            uow.repository(InsurancePolicy).require(policy.id).approve_claim(pending, clock=CLOCK)
            uow.commit()
        with engine.connect() as connection:
            statuses = connection.execute(
                sa.select(claims.c.status).order_by(claims.c.position)
            ).scalars()
            assert list(statuses) == ["approved", "denied", "approved"]
            assert connection.execute(sa.select(policies.c.version)).scalar_one() == 2

    def test_two_clerks_deciding_claims_of_one_policy_conflict(self, engine: sa.Engine) -> None:
        """Deciding different claims changes only claim rows, yet the later decision conflicts."""
        policy = policy_with_every_kind_of_claim()
        policy.file_claim(uuid4(), usd("3.00"), "Glass", TODAY, clock=CLOCK)
        with SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()]) as uow:
            uow.repository(InsurancePolicy).add(policy)
            uow.commit()
        tile, glass = (claim.id for claim in policy.pending_claims)
        mappers = [PolicyMapper()]
        with (
            SqlAlchemyUnitOfWork(engine, mappers=mappers) as first,
            SqlAlchemyUnitOfWork(engine, mappers=mappers) as second,
        ):
            first.repository(InsurancePolicy).require(policy.id).approve_claim(tile, clock=CLOCK)
            second.repository(InsurancePolicy).require(policy.id).deny_claim(
                glass, "Excluded", clock=CLOCK
            )
            first.commit()
            with pytest.raises(ConcurrencyError, match=f"InsurancePolicy {policy.id}"):
                second.commit()
        with engine.connect() as connection:
            statuses = connection.execute(
                sa.select(claims.c.status).order_by(claims.c.position)
            ).scalars()
            assert list(statuses) == ["approved", "denied", "approved", "pending"]

    def test_malformed_row_is_a_clear_error(self, engine: sa.Engine) -> None:
        """A row the domain refuses names the table and the id."""
        uow = SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()])
        policy = create_active_policy(clock=CLOCK)
        with uow:
            uow.repository(InsurancePolicy).add(policy)
            uow.commit()
        with engine.begin() as connection:
            connection.execute(sa.update(policies).values(status="lapsed"))
        with (
            uow,
            pytest.raises(
                DeserializationError, match=f"insurance_policies for id {policy.id}.*'lapsed'"
            ),
        ):
            uow.repository(InsurancePolicy).get(policy.id)

    def test_outbox_holds_the_policy_events(self, engine: sa.Engine) -> None:
        """Events of the mapped aggregate go to the outbox in the same transaction."""
        uow = SqlAlchemyUnitOfWork(engine, EventBus(), mappers=[PolicyMapper()])
        policy = create_active_policy(clock=CLOCK)
        policy.file_claim(uuid4(), usd("5.00"), "Hail", TODAY, clock=CLOCK)
        with uow:
            uow.repository(InsurancePolicy).add(policy)
            uow.commit()
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox_table.c.event_type, outbox_table.c.aggregate_id)
            ).all()
        assert [r.event_type.rsplit(".", 1)[-1] for r in rows] == ["ClaimFiled"]
        assert rows[0].aggregate_id == str(policy.id)


class TestPolicyFinder:
    def test_find_active_by_holder_reads_the_mapped_tables_and_pending_additions(
        self, engine: sa.Engine
    ) -> None:
        """The finder's SQL runs over insurance_policies; a policy added and not committed counts."""
        uow = SqlAlchemyUnitOfWork(engine, mappers=[PolicyMapper()])
        stored = create_active_policy(clock=CLOCK)
        with uow:
            uow.repository(InsurancePolicy).add(stored)
            uow.commit()
        with uow:
            policies = PolicyRepository(uow)
            pending = create_active_policy(clock=CLOCK)
            pending.holder = stored.holder
            policies.add(pending)
            found = policies.find_active_by_holder(stored.holder.id)
            assert {p.id for p in found} == {stored.id, pending.id}
            by_id = {p.id: p for p in found}
            assert by_id[pending.id] is pending
            assert by_id[stored.id] is policies.require(stored.id)
            uow.rollback()


class TestBillingStorage:
    def test_schedules_need_no_mapping_code(self, engine: sa.Engine) -> None:
        """Billing's aggregate is stored as a JSON document by tactical's default storage."""
        insurance = app.on_database(engine, CLOCK)
        policy_id = insurance.policies.issue_policy(
            holder_id=uuid4(),
            holder_name="Grace Hopper",
            holder_address=create_active_policy(clock=CLOCK).holder.address,
            holder_date_of_birth=create_active_policy(clock=CLOCK).holder.date_of_birth,
            premium=usd("10.00"),
            coverage_period=create_active_policy(clock=CLOCK).coverage_period,
            max_claim_amount=usd("100.00"),
        )
        insurance.policies.activate_policy(policy_id)
        with engine.connect() as connection:
            row = connection.execute(sa.select(aggregates_table)).one()
        assert row.aggregate_id == str(PaymentSchedule.id_for(policy_reference(policy_id)))
        assert row.state["installment"] == {"cents": 1000, "currency": "USD"}
