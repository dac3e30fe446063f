"""Fixtures for the insurance example's tests: a clock they move and ready-made policies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest
from tests.postgres import postgres_url

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.policy.clock import SYSTEM_CLOCK, Clock, today
from examples.insurance.policy.model import InsurancePolicy, Policyholder
from examples.insurance.policy.sql import metadata as policy_metadata
from examples.insurance.policy.values import Address, DateRange, Money
from tactical.sqlalchemy import metadata as tactical_metadata
from tactical.testing import MovableClock

# The date every rule test runs on: tests never depend on today's date.
TODAY = date(2026, 3, 15)
COVERAGE = DateRange(date(2026, 3, 1), date(2027, 3, 1))


def fixed_clock(day: date = TODAY) -> MovableClock:
    """A clock standing at noon UTC on ``day`` until a test moves it."""
    return MovableClock(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


def usd(amount: str) -> Money:
    """US dollars, for short test data."""
    return Money(Decimal(amount), "USD")


def holder(born: date = date(1980, 5, 17)) -> Policyholder:
    """A policyholder, adult unless told otherwise."""
    return Policyholder(
        uuid4(), "Grace Hopper", Address("1 Navy Way", "Arlington", "VA", "22202"), born
    )


def create_draft_policy(
    max_claim: Decimal = Decimal("1000"),
    *,
    born: date = date(1980, 5, 17),
    coverage: DateRange | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> InsurancePolicy:
    """A draft policy whose coverage contains the clock's today (the system clock's by default)."""
    on = today(clock)
    period = coverage or DateRange(on.replace(day=1), on.replace(year=on.year + 1, day=1))
    return InsurancePolicy.draft(
        uuid4(), holder(born), usd("50.00"), period, Money(max_claim, "USD")
    )


def create_active_policy(
    max_claim: Decimal = Decimal("1000"), *, clock: Clock = SYSTEM_CLOCK
) -> InsurancePolicy:
    """An active policy, its activation event already cleared."""
    policy = create_draft_policy(max_claim, clock=clock)
    policy.activate(clock)
    policy.clear_events()
    return policy


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'insurance.sqlite3'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url())
    app.on_database(engine)  # creates the tables
    tables = [*policy_metadata.sorted_tables, *tactical_metadata.sorted_tables]
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"TRUNCATE {', '.join(t.name for t in tables)} RESTART IDENTITY CASCADE"
        )
    yield engine
    engine.dispose()
