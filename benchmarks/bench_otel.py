"""The cost of tactical's OpenTelemetry hooks on the hot path (goal: negligible when off).

Workload, one call: the in-memory unit of work's load, command (1 event), commit and
dispatch to one handler: the commit span hook and the handler span hook each run once.
The candidate runs only what the instrumentation adds to such a call (the two hooks), the
baseline is the whole call: the ratio is the share of the call the hooks cost. Three states, in this order (the API cannot be
unloaded once imported): no ``opentelemetry`` imported at all; the API imported with no
SDK (as redis 6+ does); an SDK with a span processor that drops every span (the cost of
tracing when it is on, for information).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import uuid4

import tactical._bus as bus_module
import tactical._uow_core as uow_core
from benchmarks._domain import Account, Deposited
from benchmarks._harness import Goal, Report, compare
from tactical import EventBus, InMemoryStore, InMemoryUnitOfWork
from tactical._telemetry import NOOP

_EVENT = Deposited(uuid4(), Decimal(1))


@dataclass
class _Change:
    """What the commit hook reads of a change: type, aggregate, events."""

    aggregate_type: type[Any] = Account
    aggregate: Any = field(default_factory=lambda: Account(uuid4(), "ada"))
    events: list[Any] = field(default_factory=lambda: [_EVENT])


def _call() -> Callable[[], None]:
    bus = EventBus()
    seen = [0]
    bus.subscribe(Deposited, lambda _: seen.__setitem__(0, seen[0] + 1))
    uow = InMemoryUnitOfWork(bus, store=InMemoryStore())
    account_id = uuid4()
    with uow:
        uow.repository(Account).add(Account(account_id, "ada"))
        uow.commit()
    amount = Decimal("1.25")

    def call() -> None:
        with uow:
            uow.repository(Account).require(account_id).deposit(amount)
            uow.commit()

    return call


def _hooks(report: Report, name: str, goal: Goal | None) -> None:
    call = _call()
    changes = [_Change()]

    def hooks() -> None:
        # What one such call runs of the instrumentation: the commit hook around the
        # store, the handler hook's tracer look-up and its block around the handler.
        with uow_core.commit_span(changes):
            pass
        traced = bus_module.tracer()
        with NOOP if traced is None else bus_module.handler_span(traced, _EVENT, len, None):
            pass

    report.add(
        compare(
            "otel",
            name,
            hooks,
            call,
            against="the whole uow + dispatch call",
            goal=goal,
            rounds=200,
            seconds=1.0,
        )
    )


def run(report: Report) -> None:
    """Run the OpenTelemetry overhead benchmark into ``report``."""
    import sys

    if any(m.startswith("opentelemetry") for m in sys.modules):
        report.note("otel: opentelemetry was already imported; the first row is not 'no API'")
    _hooks(report, "hooks of uow + dispatch, no opentelemetry imported", Goal(0.05))
    try:
        from opentelemetry import trace
    except ImportError:
        report.skip("otel", ["API imported, no SDK"], "", "opentelemetry-api is not installed")
        return
    _hooks(report, "hooks of uow + dispatch, API imported, no SDK", Goal(0.05))
    try:
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    except ImportError:
        report.skip("otel", ["SDK tracing"], "", "opentelemetry-sdk is not installed")
        return

    class Dropping(SpanProcessor):
        def on_end(self, span: Any) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(Dropping())
    trace.set_tracer_provider(provider)
    _hooks(report, "hooks of uow + dispatch, SDK tracing (spans dropped)", None)
