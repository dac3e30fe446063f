"""Billing in its own process: outbox -> relay -> RabbitMQ -> billing consumer, on the real broker."""

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
from examples.insurance.policy.values import Address
from examples.insurance.tests.conftest import COVERAGE, TODAY, fixed_clock, usd
from tactical.outbox import inbox_table
from tactical.sqlalchemy import outbox_table

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    """A private exchange and queue, deleted afterwards."""
    require_server("RabbitMQ", 5672)
    pika: Any = importlib.import_module("pika")  # untyped: no stubs, no py.typed

    suffix = uuid4().hex[:8]
    exchange, queue = f"test.insurance.{suffix}", f"test.insurance.billing.{suffix}"
    yield exchange, queue
    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    channel = connection.channel()
    channel.queue_delete(queue)
    channel.exchange_delete(exchange)
    connection.close()


def worker(which: str, database: str, names: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    # The same import path as this test's: the installed tactical (or src), and the examples.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    exchange, queue = names
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
    tmp_path: Path, names: tuple[str, str]
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
