"""Workers in their own processes, on the real broker.

Billing: outbox -> relay -> RabbitMQ -> billing consumer. Expiry: timer worker -> outbox ->
relay -> RabbitMQ -> policy consumer.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from tests.conftest import require_server

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.billing.acl import policy_reference
from examples.insurance.billing.model import ScheduleStatus
from examples.insurance.policy.model import PolicyStatus
from examples.insurance.policy.values import Address, DateRange
from examples.insurance.tests.conftest import COVERAGE, TODAY, fixed_clock, usd
from tactical.outbox import inbox_table
from tactical.sqlalchemy import outbox_table

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


Names = tuple[str, str, str]


@pytest.fixture
def names() -> Iterator[Names]:
    """A private exchange, billing queue and policy queue, deleted afterwards."""
    require_server("RabbitMQ", 5672)
    pika: Any = importlib.import_module("pika")  # untyped: no stubs, no py.typed

    suffix = uuid4().hex[:8]
    exchange = f"test.insurance.{suffix}"
    queues = (f"test.insurance.billing.{suffix}", f"test.insurance.policy.{suffix}")
    yield exchange, *queues
    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
    channel.exchange_delete(exchange)
    connection.close()


def worker(which: str, database: str, names: Names) -> subprocess.CompletedProcess[str]:
    # The same import path as this test's: the installed tactical (or src), and the examples.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    exchange, queue, policy_queue = names
    return subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [
            sys.executable,
            "-m",
            "examples.insurance.worker",
            which,
            "--database",
            database,
            "--exchange",
            exchange,
            "--queue",
            queue,
            "--policy-queue",
            policy_queue,
            "--once",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_billing_worker_starts_and_stops_schedules_exactly_once(
    tmp_path: Path, names: Names
) -> None:
    """Events cross processes through the outbox and RabbitMQ; billing applies each once."""
    database = f"sqlite:///{tmp_path / 'insurance.db'}"
    engine = sa.create_engine(database)
    insurance = app.on_database(engine, fixed_clock(), billing_in_process=False)
    policy_id = insurance.policies.issue_policy(
        holder_id=uuid4(),
        holder_name="Grace Hopper",
        holder_address=Address("1 Navy Way", "Arlington", "VA", "22202"),
        holder_date_of_birth=date(1980, 5, 17),
        premium=usd("42.50"),
        coverage_period=COVERAGE,
        max_claim_amount=usd("1000.00"),
    )
    insurance.policies.activate_policy(policy_id)
    insurance.policies.file_claim(policy_id, usd("10.00"), "Hail", TODAY)
    reference = policy_reference(policy_id)
    assert insurance.billing.schedule_for(reference) is None  # not in process any more

    first = worker("billing", database, names)  # declares and binds the queue
    assert "handled 0 message(s)" in first.stderr
    relayed = worker("relay", database, names)
    assert "relayed 2 event(s)" in relayed.stderr  # PolicyIssued and ClaimFiled
    billed = worker("billing", database, names)
    assert "handled 1 message(s)" in billed.stderr  # billing is bound to PolicyIssued only

    schedule = insurance.billing.schedule_for(reference)
    assert schedule is not None
    assert len(schedule.installments()) == 12

    # At-least-once from the relay: mark the rows unpublished again, as a relay that
    # crashed between the broker's confirmation and its mark would leave them.
    with engine.begin() as connection:
        connection.execute(sa.update(outbox_table).values(published_at=None))
    worker("relay", database, names)
    redelivered = worker("billing", database, names)
    assert "handled 1 message(s)" in redelivered.stderr
    schedule = insurance.billing.schedule_for(reference)
    assert schedule is not None
    assert schedule.version == 1  # the inbox skipped the duplicate

    insurance.policies.approve_claim(
        policy_id, insurance.policies.get_policy(policy_id).claims[0].id
    )
    insurance.policies.cancel_policy(policy_id, "Moved")
    worker("relay", database, names)
    worker("billing", database, names)
    schedule = insurance.billing.schedule_for(reference)
    assert schedule is not None
    assert schedule.status is ScheduleStatus.STOPPED
    with engine.connect() as connection:
        inbox_rows = connection.execute(
            sa.select(sa.func.count()).select_from(inbox_table)
        ).scalar_one()
    assert inbox_rows == 2  # PolicyIssued and PolicyCancelled, once each
    engine.dispose()


def test_the_timer_and_policy_workers_expire_a_policy_once(tmp_path: Path, names: Names) -> None:
    """The expiry timer crosses processes: fired by the timer worker, expired by the consumer.

    The workers read the system clock, so the policy was activated (on the test's clock)
    with a coverage that has ended by now.
    """
    database = f"sqlite:///{tmp_path / 'insurance.db'}"
    engine = sa.create_engine(database)
    insurance = app.on_database(engine, fixed_clock(date(2024, 6, 15)), billing_in_process=False)
    policy_id = insurance.policies.issue_policy(
        holder_id=uuid4(),
        holder_name="Grace Hopper",
        holder_address=Address("1 Navy Way", "Arlington", "VA", "22202"),
        holder_date_of_birth=date(1980, 5, 17),
        premium=usd("42.50"),
        coverage_period=DateRange(date(2024, 1, 1), date(2025, 1, 1)),
        max_claim_amount=usd("1000.00"),
    )
    insurance.policies.activate_policy(policy_id)

    assert "handled 0 message(s)" in worker("policy", database, names).stderr  # binds its queue
    assert "fired 1 timer(s)" in worker("timers", database, names).stderr
    assert "fired 0 timer(s)" in worker("timers", database, names).stderr  # fired once
    assert "relayed 2 event(s)" in worker("relay", database, names).stderr  # issued, ended
    assert "handled 1 message(s)" in worker("policy", database, names).stderr
    policy = insurance.policies.get_policy(policy_id)
    assert policy.status is PolicyStatus.EXPIRED

    # Delivered again, as after a relay crash between confirmation and mark: no effect.
    with engine.begin() as connection:
        connection.execute(sa.update(outbox_table).values(published_at=None))
    worker("relay", database, names)
    assert "handled 1 message(s)" in worker("policy", database, names).stderr
    assert insurance.policies.get_policy(policy_id).version == policy.version
    with engine.connect() as connection:
        inbox_rows = connection.execute(
            sa.select(inbox_table.c.consumer, inbox_table.c.event_id)
        ).all()
    assert [row.consumer for row in inbox_rows] == ["insurance.policy"]
    engine.dispose()
