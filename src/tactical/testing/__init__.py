"""What users import to test their own domain with tactical (needs pytest and Hypothesis).

- :func:`given` starts a given/when/then :class:`Scenario` for an aggregate;
  :func:`given_process` a :class:`ProcessScenario` for a process manager (events in;
  commands, events and timers out).
- :func:`value_objects`, :func:`aggregates` and :func:`strategy_for` are Hypothesis
  strategies that build valid instances from type annotations.
- :class:`UnitOfWorkContract` is the contract suite every tactical unit of work passes;
  subclass it to prove your own unit of work, repository or mapper honours the contract;
  :class:`AsyncUnitOfWorkContract` runs the same tests against an async unit of work.
  Its sample aggregate :class:`Counter` (with :class:`Tag`, :class:`Tally` and the events
  :class:`CounterTicked` and :class:`CounterRenamed`) is exported so that a relational
  mapper of your own can store it.
- :func:`structural_state` gives a comparable picture of an aggregate that looks inside
  its entities (whose ``==`` compares ids only): compare it to test a mapper's round trip.
- :class:`MovableClock` is a clock tests move by hand (``clock.advance(timedelta(days=30))``)
  so that durable timers fire without sleeping.
- :func:`assert_no_infrastructure_imports`, :func:`assert_aggregates_reference_by_id` and
  :func:`assert_value_objects_hold_no_entities` are architecture rules for your domain.

.. versionadded:: 0.1.0
"""

from tactical._exports import publish as _publish
from tactical._extras import missing_extra

# Only checks that the extra is installed, to say which one when it is not.
try:
    import hypothesis as _hypothesis  # noqa: F401  # pyright: ignore[reportUnusedImport]
    import pytest
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.testing", "testing") from _missing

# Users run these under pytest: give their assertions pytest's detailed messages.
pytest.register_assert_rewrite("tactical.testing._contract")

from tactical._structural import structural_state  # noqa: E402
from tactical.testing._architecture import (  # noqa: E402
    INFRASTRUCTURE,
    assert_aggregates_reference_by_id,
    assert_no_infrastructure_imports,
    assert_value_objects_hold_no_entities,
)
from tactical.testing._clock import MovableClock  # noqa: E402
from tactical.testing._contract import (  # noqa: E402
    AsyncUnitOfWorkContract,
    AsyncUnitOfWorkFactory,
    Counter,
    CounterRenamed,
    CounterTicked,
    Tag,
    Tally,
    UnitOfWorkContract,
    UnitOfWorkFactory,
)
from tactical.testing._process_scenario import ProcessScenario, given_process  # noqa: E402
from tactical.testing._scenario import Scenario, given  # noqa: E402
from tactical.testing._strategies import aggregates, strategy_for, value_objects  # noqa: E402

__all__ = [
    "INFRASTRUCTURE",
    "AsyncUnitOfWorkContract",
    "AsyncUnitOfWorkFactory",
    "Counter",
    "CounterRenamed",
    "CounterTicked",
    "MovableClock",
    "ProcessScenario",
    "Scenario",
    "Tag",
    "Tally",
    "UnitOfWorkContract",
    "UnitOfWorkFactory",
    "aggregates",
    "assert_aggregates_reference_by_id",
    "assert_no_infrastructure_imports",
    "assert_value_objects_hold_no_entities",
    "given",
    "given_process",
    "strategy_for",
    "structural_state",
    "value_objects",
]

_publish(__name__, globals(), __all__)
