"""A policy expires at the end of its coverage through a durable timer, with a moved clock.

Activation schedules the expiry in its own transaction, renewal moves it, cancellation
cancels it; when the clock passes the end, the timer worker fires it and its handler
expires the policy, once. In memory, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from tests.postgres import postgres_url

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.policy.events import PolicyCoverageEnded, PolicyExpired
from examples.insurance.policy.model import PolicyStatus
from examples.insurance.policy.services import expiry_key
from examples.insurance.policy.values import Address
from examples.insurance.tests.conftest import COVERAGE, fixed_clock, usd
from tactical import DomainEvent, InvariantViolation
from tactical.outbox import inbox_table
from tactical.sqlalchemy import outbox_table, scheduled_table
from tactical.testing import MovableClock

END = datetime(2027, 3, 1, tzinfo=UTC)  # the start of COVERAGE.end: when the coverage is over
SECOND = timedelta(seconds=1)
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Setup:
    """One application on one storage, its clock, and what it published."""

    insurance: app.Insurance
    clock: MovableClock
    engine: sa.Engine | None
    published: list[DomainEvent]

    def expired(self) -> list[PolicyExpired]:
        return [e for e in self.published if isinstance(e, PolicyExpired)]

    def status(self, policy_id: UUID) -> PolicyStatus:
        return self.insurance.policies.get_policy(policy_id).status


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest) -> Setup:
    """The application in memory, on a SQLite file or on PostgreSQL, on a clock tests move."""
    clock = fixed_clock()
    engine: sa.Engine | None = None
    if request.param == "memory":
        insurance = app.in_memory(clock)
    else:
        database: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
        insurance, engine = app.on_database(database, clock), database
    published: list[DomainEvent] = []
    insurance.bus.subscribe(DomainEvent, published.append)
    return Setup(insurance, clock, engine, published)


def active_policy(insurance: app.Insurance, *, born: date = date(1980, 5, 17)) -> UUID:
    policy_id = insurance.policies.issue_policy(
        holder_id=uuid4(),
        holder_name="Grace Hopper",
        holder_address=Address("1 Navy Way", "Arlington", "VA", "22202"),
        holder_date_of_birth=born,
        premium=usd("42.50"),
        coverage_period=COVERAGE,
        max_claim_amount=usd("1000.00"),
    )
    insurance.policies.activate_policy(policy_id)
    return policy_id


def stored_timers(engine: sa.Engine) -> list[tuple[str, datetime]]:
    t = scheduled_table.c
    with engine.connect() as connection:
        rows = connection.execute(sa.select(t.key, t.due_at).order_by(t.key)).all()
    return [(row.key, row.due_at.replace(tzinfo=UTC)) for row in rows]


class TestExpiryTimer:
    def test_the_policy_expires_once_the_clock_passes_the_end_of_coverage(
        self, setup: Setup
    ) -> None:
        """Not a second before the end; at the end the timer fires and the policy expires."""
        policy_id = active_policy(setup.insurance)
        setup.clock.set(END - SECOND)
        assert setup.insurance.timers.fire_due() == 0
        assert setup.status(policy_id) is PolicyStatus.ACTIVE

        setup.clock.set(END)
        assert setup.insurance.timers.fire_due() == 1
        policy = setup.insurance.policies.get_policy(policy_id)
        assert policy.status is PolicyStatus.EXPIRED
        assert [(e.policy_id, e.expired_on) for e in setup.expired()] == [(policy_id, COVERAGE.end)]

        setup.clock.advance(timedelta(days=30))
        assert setup.insurance.timers.fire_due() == 0  # fired once
        assert setup.insurance.policies.get_policy(policy_id).version == policy.version
        assert len(setup.expired()) == 1

    def test_no_policy_expires_while_its_coverage_runs(self, setup: Setup) -> None:
        """Months pass inside the coverage: nothing fires, every policy stays active."""
        policies = [active_policy(setup.insurance) for _ in range(3)]
        for month in range(1, 12):
            setup.clock.set(datetime(2026, 3, 15, tzinfo=UTC) + timedelta(days=30 * month))
            assert setup.clock.now() < END
            assert setup.insurance.timers.fire_due() == 0
        assert {setup.status(p) for p in policies} == {PolicyStatus.ACTIVE}
        assert setup.expired() == []

    def test_each_policy_expires_on_its_own_timer(self, setup: Setup) -> None:
        """Several policies ending together expire together, each once."""
        policies = [active_policy(setup.insurance) for _ in range(3)]
        setup.clock.set(END + timedelta(hours=6))
        assert setup.insurance.timers.fire_due() == 3
        assert {setup.status(p) for p in policies} == {PolicyStatus.EXPIRED}
        assert sorted(str(e.policy_id) for e in setup.expired()) == sorted(map(str, policies))

    def test_renewal_moves_the_deadline(self, setup: Setup) -> None:
        """Renewed until a later end: nothing fires at the old end, the policy expires at the new."""
        policy_id = active_policy(setup.insurance)
        setup.insurance.policies.renew_policy(policy_id, date(2028, 3, 1))

        setup.clock.set(END + timedelta(days=1))
        assert setup.insurance.timers.fire_due() == 0
        assert setup.status(policy_id) is PolicyStatus.ACTIVE

        setup.clock.set(datetime(2028, 3, 1, tzinfo=UTC))
        assert setup.insurance.timers.fire_due() == 1
        assert setup.status(policy_id) is PolicyStatus.EXPIRED
        assert [e.expired_on for e in setup.expired()] == [date(2028, 3, 1)]

    def test_cancellation_cancels_the_timer(self, setup: Setup) -> None:
        """A cancelled policy's timer never fires; the policy stays cancelled."""
        policy_id = active_policy(setup.insurance)
        setup.insurance.policies.cancel_policy(policy_id, "Moved")
        setup.clock.set(END + timedelta(days=1))
        assert setup.insurance.timers.fire_due() == 0
        assert setup.status(policy_id) is PolicyStatus.CANCELLED
        assert setup.expired() == []

    def test_a_suspended_policy_expires_too(self, setup: Setup) -> None:
        """Suspension leaves the timer in place: the coverage still ends."""
        policy_id = active_policy(setup.insurance)
        setup.insurance.policies.suspend_policy(policy_id, "Unpaid premium")
        setup.clock.set(END)
        assert setup.insurance.timers.fire_due() == 1
        assert setup.status(policy_id) is PolicyStatus.EXPIRED

    def test_expiring_by_hand_cancels_the_timer(self, setup: Setup) -> None:
        """A clerk who expires the policy first leaves the timer nothing to do, and it is gone."""
        policy_id = active_policy(setup.insurance)
        setup.clock.set(END + timedelta(hours=1))
        setup.insurance.policies.expire_policy(policy_id)
        assert setup.insurance.timers.fire_due() == 0
        assert len(setup.expired()) == 1

    def test_a_refused_activation_schedules_nothing(self, setup: Setup) -> None:
        """The timer is part of the activation's transaction: refused, nothing is stored."""
        with pytest.raises(InvariantViolation, match="at least 18"):
            active_policy(setup.insurance, born=date(2015, 1, 1))
        setup.clock.set(END + timedelta(days=1))
        assert setup.insurance.timers.fire_due() == 0
        if setup.engine is not None:
            assert stored_timers(setup.engine) == []


class TestExpiryHandler:
    def test_a_duplicate_or_stale_message_has_no_effect(self, setup: Setup) -> None:
        """The handler expires once; a message from before a renewal, or after cancel, is ignored."""
        expiring, renewed, cancelled = (active_policy(setup.insurance) for _ in range(3))
        setup.insurance.policies.renew_policy(renewed, date(2028, 3, 1))
        setup.insurance.policies.cancel_policy(cancelled, "Moved")
        setup.clock.set(END)
        policies = setup.insurance.policies

        assert policies.expire_at_coverage_end(PolicyCoverageEnded(expiring, COVERAGE.end))
        assert not policies.expire_at_coverage_end(PolicyCoverageEnded(expiring, COVERAGE.end))
        assert not policies.expire_at_coverage_end(PolicyCoverageEnded(renewed, COVERAGE.end))
        assert not policies.expire_at_coverage_end(PolicyCoverageEnded(cancelled, COVERAGE.end))
        assert [e.policy_id for e in setup.expired()] == [expiring]
        assert setup.status(renewed) is PolicyStatus.ACTIVE
        assert setup.status(cancelled) is PolicyStatus.CANCELLED


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)]
)
class TestOnTheDatabase:
    def test_the_timer_is_stored_with_the_activation_and_moved_by_the_renewal(
        self, engine_name: str, request: pytest.FixtureRequest
    ) -> None:
        """One row in tactical_scheduled, keyed by the policy, due at the end of coverage."""
        engine: sa.Engine = request.getfixturevalue(engine_name)
        insurance = app.on_database(engine, fixed_clock())
        policy_id = active_policy(insurance)
        assert stored_timers(engine) == [(expiry_key(policy_id), END)]
        insurance.policies.renew_policy(policy_id, date(2028, 3, 1))
        assert stored_timers(engine) == [(expiry_key(policy_id), datetime(2028, 3, 1, tzinfo=UTC))]
        insurance.policies.cancel_policy(policy_id, "Moved")
        assert stored_timers(engine) == []

    def test_a_redelivered_timer_message_expires_the_policy_once(
        self, engine_name: str, request: pytest.FixtureRequest
    ) -> None:
        """The relay publishes at least once; the policy inbox handles the fired message once."""
        engine: sa.Engine = request.getfixturevalue(engine_name)
        clock = fixed_clock()
        insurance = app.on_database(engine, clock)
        policy_id = active_policy(insurance)
        clock.set(END)
        assert insurance.timers.fire_due() == 1
        version = insurance.policies.get_policy(policy_id).version

        # As a relay that crashed between delivering and marking would leave them.
        with engine.begin() as connection:
            connection.execute(sa.update(outbox_table).values(published_at=None))
        assert insurance.timers.fire_due() == 0  # nothing new fires; the relay delivers again

        assert insurance.policies.get_policy(policy_id).version == version
        assert outbox_count(engine, PolicyExpired) == 1
        with engine.connect() as connection:
            inbox = connection.execute(sa.select(inbox_table.c.consumer)).scalars().all()
        assert inbox == [app.POLICY_CONSUMER]


def database_url(engine: sa.Engine) -> str:
    """The URL another process connects with (the password included)."""
    if engine.dialect.name == "postgresql":
        return postgres_url().render_as_string(hide_password=False)
    return engine.url.render_as_string(hide_password=False)


def run_until_killed(script: Path, url: str, signal_line: str) -> None:
    """Run ``script url``; SIGKILL it once it prints ``signal_line``."""
    # The same import path as this test's: the installed tactical (or src), and the examples.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(  # noqa: S603  (our own interpreter, our own script)
        [sys.executable, str(script), url], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == signal_line
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def outbox_count(engine: sa.Engine, event_type: type[DomainEvent]) -> int:
    """How many events of ``event_type`` the outbox holds."""
    name = app.insurance_codec().type_name(event_type)
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.event_type == name)
        ).scalar_one()


_CRASHING_TIMER_WORKER = """
import sys, time
from datetime import UTC, datetime
import sqlalchemy as sa
from examples.insurance.worker import timer_worker

class Clock:
    def now(self):
        return datetime(2100, 1, 1, tzinfo=UTC)

def stop_before_commit(connection):
    print("fired", flush=True)
    time.sleep(600)  # killed here: the timer deleted and its message in the outbox, uncommitted

engine = sa.create_engine(sys.argv[1])
sa.event.listen(engine, "commit", stop_before_commit)
timer_worker(engine, Clock()).fire_due()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)]
)
def test_a_timer_worker_killed_between_firing_and_committing_expires_the_policy_once(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL after the timer moved to the outbox, before the commit: fired later, once."""
    engine: sa.Engine = request.getfixturevalue(engine_name)
    clock = fixed_clock()
    insurance = app.on_database(engine, clock)
    policy_id = active_policy(insurance)
    script = tmp_path / "crashing_timer_worker.py"
    script.write_text(_CRASHING_TIMER_WORKER)
    run_until_killed(script, database_url(engine), "fired")

    # Rolled back: the timer is still there, its message is not in the outbox.
    assert stored_timers(engine) == [(expiry_key(policy_id), END)]
    assert outbox_count(engine, PolicyCoverageEnded) == 0
    assert insurance.policies.get_policy(policy_id).status is PolicyStatus.ACTIVE

    clock.set(END)
    assert insurance.timers.fire_due() == 1  # the restarted worker fires it
    assert insurance.timers.fire_due() == 0  # once
    assert insurance.policies.get_policy(policy_id).status is PolicyStatus.EXPIRED
    assert stored_timers(engine) == []
    assert outbox_count(engine, PolicyCoverageEnded) == 1
    assert outbox_count(engine, PolicyExpired) == 1


_CRASHING_RELAY = """
import sys, time
from datetime import UTC, datetime
import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.policy.events import PolicyCoverageEnded
from tactical.outbox import OutboxRelay
from tactical.testing import MovableClock

engine = sa.create_engine(sys.argv[1])
clock = MovableClock(datetime(2027, 3, 1, tzinfo=UTC))
delivery = app.InboxDelivery(
    app.policy_inbox(engine, clock), [app.insurance_codec().type_name(PolicyCoverageEnded)]
)

class CrashAfterDelivery:
    def publish(self, messages):
        delivery.publish(messages)
        print("delivered", flush=True)
        time.sleep(600)  # killed here: the policy expired, the outbox rows not marked

OutboxRelay(engine, CrashAfterDelivery()).relay_once()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)]
)
def test_a_relay_killed_between_delivering_and_marking_expires_the_policy_once(
    engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL after the policy inbox committed the expiry: delivered again, handled once."""
    engine: sa.Engine = request.getfixturevalue(engine_name)
    clock = fixed_clock()
    policy_id = active_policy(app.on_database(engine, clock))
    clock.set(END)
    fired = app.on_database(engine, clock, billing_in_process=False)  # fires, relays nothing
    assert fired.timers.fire_due() == 1

    script = tmp_path / "crashing_relay.py"
    script.write_text(_CRASHING_RELAY)
    run_until_killed(script, database_url(engine), "delivered")
    assert fired.policies.get_policy(policy_id).status is PolicyStatus.EXPIRED
    with engine.connect() as connection:
        marked = connection.execute(
            sa.select(sa.func.count())
            .select_from(outbox_table)
            .where(outbox_table.c.published_at.is_not(None))
        ).scalar_one()
    assert marked == 0  # killed before the relay marked what it delivered
    version = fired.policies.get_policy(policy_id).version

    restarted = app.on_database(engine, clock)  # its relay delivers the unmarked rows again
    assert restarted.timers.fire_due() == 0
    assert restarted.policies.get_policy(policy_id).version == version
    assert outbox_count(engine, PolicyExpired) == 1
    assert restarted.timers.fire_due() == 0  # every row marked now
