"""``python -m examples.insurance``: a narrated scenario on a SQLite file.

Issues and activates a policy, files claims (one refused, with its error), approves and denies
them, cancels the policy, and shows the billing schedule that the policy events drove. Then
a second policy expires at the end of its coverage through a durable timer: scheduled when
it is activated, moved by its renewal, fired when the clock passes its end.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import sqlalchemy as sa
from examples.insurance import app
from examples.insurance.billing.acl import policy_reference
from examples.insurance.policy.values import Address, DateRange, Money
from tactical import DomainError, DomainEvent
from tactical.outbox import TIMER_AGGREGATE_TYPE
from tactical.sqlalchemy import outbox_table, scheduled_table
from tactical.testing import MovableClock


def say(text: str) -> None:
    """Narrate one step."""
    print(text)


def main() -> int:
    """Run the scenario; returns the exit status."""
    with tempfile.TemporaryDirectory() as directory:
        database = Path(directory) / "insurance.sqlite3"
        engine = sa.create_engine(f"sqlite:///{database}")
        try:
            run(engine)
        finally:
            engine.dispose()
    return 0


def run(engine: sa.Engine) -> None:
    """The scenario itself, on any engine."""
    clock = MovableClock(datetime(2026, 3, 15, 9, 30, tzinfo=UTC))
    insurance = app.on_database(engine, clock)
    published: list[str] = []
    insurance.bus.subscribe(DomainEvent, lambda e: published.append(type(e).__name__))
    say(f"Insurance example on {engine.url.render_as_string(hide_password=True)}")
    say(
        f"Today is {clock.now():%Y-%m-%d} (a clock the scenario moves: it never depends on "
        "the date)."
    )

    holder_id = uuid4()
    policy_id = insurance.policies.issue_policy(
        holder_id=holder_id,
        holder_name="Ada Lovelace",
        holder_address=Address("12 St James's Square", "London", "LDN", "SW1Y 4JH", "GB"),
        holder_date_of_birth=date(1990, 12, 10),
        premium=Money(Decimal("42.50"), "GBP"),
        coverage_period=DateRange(date(2026, 3, 1), date(2027, 3, 1)),
        max_claim_amount=Money(Decimal("1000.00"), "GBP"),
    )
    say(f"\n1. Issued policy {policy_id} in draft for Ada Lovelace, 42.50 GBP a month.")

    insurance.policies.activate_policy(policy_id)
    say("2. Activated it: PolicyIssued was committed to the outbox and published.")
    schedule = insurance.billing.schedule_for(policy_reference(policy_id))
    assert schedule is not None  # noqa: S101  (the narrated flow guarantees it)
    first = schedule.installments()[:3]
    say(
        f"   Billing (its own context, fed by the event) started a {schedule.frequency.value} "
        f"schedule of {len(schedule.installments())} installments of {schedule.installment}: "
        + ", ".join(str(i.due_on) for i in first)
        + ", ..."
    )
    active = insurance.queries.find_active_by_holder(holder_id)
    say(f"   find_active_by_holder: {[str(p.policy_id) for p in active]}")

    water = insurance.policies.file_claim(
        policy_id, Money(Decimal("800.00"), "GBP"), "Water damage in the kitchen", date(2026, 3, 10)
    )
    say(f"\n3. Filed claim {water} for 800.00 GBP (water damage).")
    say("4. Tried to file a second claim for 300.00 GBP while the first is pending:")
    try:
        insurance.policies.file_claim(
            policy_id, Money(Decimal("300.00"), "GBP"), "Broken window", date(2026, 3, 12)
        )
    except DomainError as error:
        say(f"   refused: {type(error).__name__}: {error}")
    say("   The refused command changed nothing: the transaction was rolled back.")

    insurance.policies.approve_claim(policy_id, water)
    say(f"5. Approved claim {water}.")
    theft = insurance.policies.file_claim(
        policy_id, Money(Decimal("300.00"), "GBP"), "Stolen bicycle", date(2026, 3, 14)
    )
    insurance.policies.deny_claim(policy_id, theft, "Bicycles are excluded from this cover")
    say(f"6. Filed claim {theft} (stolen bicycle) and denied it: not covered.")

    pending = insurance.policies.file_claim(
        policy_id, Money(Decimal("120.00"), "GBP"), "Cracked tile", date(2026, 3, 15)
    )
    say(
        f"7. Filed claim {pending} for 120.00 GBP (cracked tile); tried to cancel while it is pending:"
    )
    try:
        insurance.policies.cancel_policy(policy_id, "Moving abroad")
    except DomainError as error:
        say(f"   refused: {type(error).__name__}: {error}")
    insurance.policies.approve_claim(policy_id, pending)
    say(f"   Approved claim {pending}.")

    clock.set(datetime(2026, 6, 20, 17, 0, tzinfo=UTC))
    insurance.policies.cancel_policy(policy_id, "Moving abroad")
    say(
        f"8. On {clock.now():%Y-%m-%d}, with no claim pending, cancelled the policy "
        "(and, in the same transaction, its expiry timer)."
    )
    schedule = insurance.billing.schedule_for(policy_reference(policy_id))
    assert schedule is not None  # noqa: S101
    say(
        f"   Billing stopped the schedule from {schedule.stopped_from}: "
        f"{len(schedule.installments())} installments billed, {schedule.total_due()} in total."
    )

    expiring = expire_through_a_timer(insurance, engine, clock)

    policy = insurance.policies.get_policy(policy_id)
    say(
        f"\nPolicy {policy.id} is {policy.status.value} (version {policy.version}); claims: "
        + ", ".join(f"{c.amount} {c.status.value}" for c in policy.claims)
    )
    other = insurance.policies.get_policy(expiring)
    say(
        f"Policy {other.id} is {other.status.value} (version {other.version}), "
        f"covered {other.coverage_period}."
    )
    say("Events published, in order: " + ", ".join(published))
    outbox = outbox_table
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(outbox.c.aggregate_type == TIMER_AGGREGATE_TYPE)
        ).scalars()
        fired = list(rows)
    say(
        f"Outbox rows: {fired.count(False)} events, each written in the transaction of its "
        f"change, and {fired.count(True)} fired timer, written by the timer worker."
    )


def expire_through_a_timer(
    insurance: app.Insurance, engine: sa.Engine, clock: MovableClock
) -> UUID:
    """Steps 9 to 12: a policy expires when the clock passes its end, and not before."""
    policy_id = insurance.policies.issue_policy(
        holder_id=uuid4(),
        holder_name="Charles Babbage",
        holder_address=Address("1 Dorset Street", "London", "LDN", "W1U 4EG", "GB"),
        holder_date_of_birth=date(1991, 12, 26),
        premium=Money(Decimal("30.00"), "GBP"),
        coverage_period=DateRange(date(2026, 7, 1), date(2027, 7, 1)),
        max_claim_amount=Money(Decimal("500.00"), "GBP"),
    )
    insurance.policies.activate_policy(policy_id)
    say(
        f"\n9. Issued and activated policy {policy_id} for Charles Babbage, covered "
        "2026-07-01 to 2027-07-01."
    )
    say(f"   Timers stored with the activation: {timers(engine)}")
    say("   (The cancelled policy's timer is gone: its cancellation deleted it.)")

    clock.set(datetime(2027, 5, 20, 11, 0, tzinfo=UTC))
    insurance.policies.renew_policy(policy_id, date(2028, 7, 1))
    say(f"10. On {clock.now():%Y-%m-%d} renewed it until 2028-07-01; the same transaction")
    say(f"    scheduled its timer again under the same key: {timers(engine)}")
    schedule = insurance.billing.schedule_for(policy_reference(policy_id))
    assert schedule is not None  # noqa: S101  (the narrated flow guarantees it)
    say(
        f"    Billing, fed by PolicyRenewed, now bills until {schedule.ends_before}: "
        f"{len(schedule.installments())} installments."
    )

    clock.set(datetime(2027, 7, 1, 8, 0, tzinfo=UTC))
    fired = insurance.timers.fire_due()
    status = insurance.policies.get_policy(policy_id).status.value
    say(
        f"11. On {clock.now():%Y-%m-%d}, the old end, the timer worker fired {fired} timer(s): "
        f"the policy is {status}."
    )

    clock.set(datetime(2028, 7, 1, 0, 0, 30, tzinfo=UTC))
    fired = insurance.timers.fire_due()
    policy = insurance.policies.get_policy(policy_id)
    say(
        f"12. On {clock.now():%Y-%m-%d} the clock passed the new end: the timer worker fired "
        f"{fired} timer(s) into the outbox,"
    )
    say(
        "    the relay handed it to the policy context's inbox consumer, which expired the "
        f"policy: it is {policy.status.value}."
    )
    again = insurance.timers.fire_due()
    say(
        f"    A second round fires {again} timer(s): each timer fires once. Timers left: {timers(engine)}."
    )
    return policy_id


def timers(engine: sa.Engine) -> str:
    """The timers stored in ``tactical_scheduled``, as text."""
    t = scheduled_table.c
    with engine.connect() as connection:
        rows = connection.execute(sa.select(t.key, t.due_at).order_by(t.due_at)).all()
    if not rows:
        return "none"
    return "; ".join(f"{row.key} due {row.due_at:%Y-%m-%d %H:%M} UTC" for row in rows)


if __name__ == "__main__":
    sys.exit(main())
