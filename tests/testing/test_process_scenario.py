"""given_process: a process manager's scenario passes what is right and explains what is wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from tests.process_model import (
    PICKUP_WINDOW,
    DecrementLabelStock,
    LabelPrinted,
    PickupDeadline,
    PickupDeadlinePassed,
    PickupMissed,
    PickupScanned,
    RaiseShipmentException,
    deadline_key,
)

from tactical import (
    AsyncInMemoryUnitOfWork,
    DomainError,
    InMemoryStore,
    ProcessManager,
    ScheduledMessage,
)
from tactical.testing import ProcessScenario, given_process

PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)


@pytest.fixture
def shipment_id() -> UUID:
    return uuid4()


def printed(shipment_id: UUID, carrier: str = "DHL") -> LabelPrinted:
    return LabelPrinted(shipment_id, carrier, occurred_at=PRINTED_AT)


def deadline(shipment_id: UUID) -> ScheduledMessage:
    return ScheduledMessage(
        deadline_key(shipment_id), PickupDeadlinePassed(shipment_id), PRINTED_AT + PICKUP_WINDOW
    )


class TestThen:
    def test_a_starting_event_asks_for_its_command_and_schedules_its_timer(
        self, shipment_id: UUID
    ) -> None:
        """No history: the event under test starts the process; then() returns the manager."""
        manager = (
            given_process(PickupDeadline)
            .when(printed(shipment_id))
            .then(commands=[DecrementLabelStock("DHL")], scheduled=[deadline(shipment_id)])
        )
        assert (manager.id, manager.carrier) == (shipment_id, "DHL")

    def test_history_is_applied_and_what_it_did_is_not_expected(self, shipment_id: UUID) -> None:
        """The label's command and timer came from the history: the deadline's outcome alone."""
        manager = (
            given_process(PickupDeadline, printed(shipment_id, "UPS"))
            .when(PickupDeadlinePassed(shipment_id))
            .then(
                events=[PickupMissed(shipment_id, "UPS")],
                commands=[RaiseShipmentException(shipment_id, "no pickup scan from UPS")],
                completed=True,
            )
        )
        assert manager.missed

    def test_a_cancelled_timer_is_expected_by_its_key(self, shipment_id: UUID) -> None:
        """PickupScanned cancels the deadline and completes the process."""
        given_process(PickupDeadline, printed(shipment_id)).when(PickupScanned(shipment_id)).then(
            cancelled=[deadline_key(shipment_id)], completed=True
        )

    def test_classes_match_any_message_of_their_type(self, shipment_id: UUID) -> None:
        """An expected event or command class matches whatever its fields are."""
        given_process(PickupDeadline, printed(shipment_id)).when(
            PickupDeadlinePassed(shipment_id)
        ).then(events=[PickupMissed], commands=[RaiseShipmentException], completed=True)

    def test_the_scenario_may_start_from_a_manager(self, shipment_id: UUID) -> None:
        """A manager given as it is stored: events advance it from there."""
        stored = PickupDeadline(shipment_id, carrier="GLS")
        given_process(stored).when(PickupDeadlinePassed(shipment_id)).then(
            events=[PickupMissed(shipment_id, "GLS")],
            commands=[RaiseShipmentException],
            completed=True,
        )

    def test_generated_fields_are_compared_on_request(self, shipment_id: UUID) -> None:
        """command_id is ignored unless named in compare; then it must match."""
        scenario = given_process(PickupDeadline).when(printed(shipment_id))
        with pytest.raises(AssertionError, match="differs in command_id"):
            scenario.then(
                commands=[DecrementLabelStock("DHL")],
                scheduled=[deadline(shipment_id)],
                compare=["command_id"],
            )
        with pytest.raises(ValueError, match="compare takes"):
            given_process(PickupDeadline).when(printed(shipment_id)).then(compare=["carrier"])


class TestFailures:
    def test_a_wrong_expectation_shows_expected_and_actual(self, shipment_id: UUID) -> None:
        """Every difference is named on its own line, then both outcomes in full."""
        scenario = given_process(PickupDeadline, printed(shipment_id)).when(
            PickupDeadlinePassed(shipment_id)
        )
        with pytest.raises(AssertionError) as failure:
            scenario.then(events=[PickupMissed(shipment_id, "UPS")])
        message = str(failure.value)
        assert message.splitlines()[:4] == [
            f"when: PickupDeadlinePassed(shipment_id={shipment_id!r})",
            "event 1 (PickupMissed) differs in carrier: expected 'UPS', got 'DHL'",
            "expected 0 command(s), got 1",
            "completed: expected False, got True (pass completed=True if the event ends the "
            "process)",
        ]
        expected, actual = message.split("\nexpected:\n")[1].split("\nactual:\n")
        assert "carrier='UPS'" in expected
        assert "commands:\n  (none)" in expected
        assert "carrier='DHL'" in actual
        assert "reason='no pickup scan from DHL'" in actual
        assert "command_id" not in message  # generated, never shown

    def test_a_wrong_timer_names_what_differs(self, shipment_id: UUID) -> None:
        """A timer's due time, key and message are each checked and reported."""
        early = ScheduledMessage(
            deadline_key(shipment_id), PickupDeadlinePassed(shipment_id), PRINTED_AT
        )
        with pytest.raises(AssertionError, match=re.escape("expected due at 2030-06-01T09:00")):
            given_process(PickupDeadline).when(printed(shipment_id)).then(
                commands=[DecrementLabelStock("DHL")], scheduled=[early]
            )
        other = ScheduledMessage(
            deadline_key(shipment_id), PickupDeadlinePassed(uuid4()), PRINTED_AT + PICKUP_WINDOW
        )
        with pytest.raises(AssertionError, match="its message \\(PickupDeadlinePassed\\) differs"):
            given_process(PickupDeadline).when(printed(shipment_id)).then(
                commands=[DecrementLabelStock("DHL")], scheduled=[other]
            )
        with pytest.raises(AssertionError, match="expected 0 scheduled timer\\(s\\), got 1"):
            given_process(PickupDeadline).when(printed(shipment_id)).then(
                commands=[DecrementLabelStock("DHL")]
            )

    def test_a_wrong_cancellation_is_reported(self, shipment_id: UUID) -> None:
        with pytest.raises(AssertionError, match=r"cancelled timers: expected \[\], got \["):
            given_process(PickupDeadline, printed(shipment_id)).when(
                PickupScanned(shipment_id)
            ).then(completed=True)
        with pytest.raises(TypeError, match="write cancelled=\\['k'\\]"):
            given_process(PickupDeadline, printed(shipment_id)).when(
                PickupScanned(shipment_id)
            ).then(cancelled="k", completed=True)

    def test_an_ignored_event_fails_then_and_says_why(self, shipment_id: UUID) -> None:
        """An advancing event with no started process: then() fails naming the reason."""
        with pytest.raises(AssertionError, match="was ignored: it does not start PickupDeadline"):
            given_process(PickupDeadline).when(PickupScanned(shipment_id)).then(completed=True)

    def test_an_error_raised_by_the_manager_fails_then_with_its_message(self) -> None:
        class Strict(PickupDeadline):
            @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
            def refuse(self, event: PickupScanned) -> None:
                raise DomainError("scanned by the wrong carrier")

        shipment_id = uuid4()
        with pytest.raises(
            AssertionError, match="raised DomainError: scanned by the wrong carrier"
        ):
            given_process(Strict, printed(shipment_id)).when(PickupScanned(shipment_id)).then()
        error = (
            given_process(Strict, printed(shipment_id))
            .when(PickupScanned(shipment_id))
            .then_raises(DomainError, match="wrong carrier")
        )
        assert str(error) == "scanned by the wrong carrier"
        with pytest.raises(AssertionError, match="does not match 'right'"):
            given_process(Strict, printed(shipment_id)).when(
                PickupScanned(shipment_id)
            ).then_raises(DomainError, match="right")

    def test_then_raises_fails_when_nothing_is_raised(self, shipment_id: UUID) -> None:
        with pytest.raises(AssertionError, match=r"did not raise; expected DomainError\. It did:"):
            given_process(PickupDeadline, printed(shipment_id)).when(
                PickupScanned(shipment_id)
            ).then_raises(DomainError)


class TestReasons:
    def test_each_reason_for_ignoring_is_told(self, shipment_id: UUID) -> None:
        """A completed process and an event handled already are named as such."""
        label = printed(shipment_id)
        with pytest.raises(AssertionError, match="the PickupDeadline process was completed"):
            given_process(PickupDeadline, label, PickupScanned(shipment_id)).when(
                PickupDeadlinePassed(shipment_id)
            ).then(completed=True)
        with pytest.raises(
            AssertionError, match=re.escape(f"handled this very event (event_id {label.event_id})")
        ):
            given_process(PickupDeadline, label).when(label).then()
        with pytest.raises(
            AssertionError, match=r"did not raise; expected DomainError\. It was ignored"
        ):
            given_process(PickupDeadline, label).when(label).then_raises(DomainError)

    def test_a_wrong_timer_key_is_named(self, shipment_id: UUID) -> None:
        elsewhere = ScheduledMessage(
            "elsewhere", PickupDeadlinePassed(shipment_id), PRINTED_AT + PICKUP_WINDOW
        )
        with pytest.raises(AssertionError, match="scheduled timer 1: expected key 'elsewhere'"):
            given_process(PickupDeadline).when(printed(shipment_id)).then(
                commands=[DecrementLabelStock], scheduled=[elsewhere]
            )

    def test_another_error_fails_then_raises_and_then_ignored(self) -> None:
        class Broken(PickupDeadline):
            @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
            def broken(self, event: PickupScanned) -> None:
                raise KeyError("scanner")

        shipment_id = uuid4()
        scenario = given_process(Broken, printed(shipment_id)).when(PickupScanned(shipment_id))
        with pytest.raises(AssertionError, match="raised KeyError: 'scanner'; expected Domain"):
            scenario.then_raises(DomainError)
        scenario = given_process(Broken, printed(shipment_id)).when(PickupScanned(shipment_id))
        with pytest.raises(AssertionError, match="raised KeyError: 'scanner'; expected it to"):
            scenario.then_ignored()


class TestIgnored:
    def test_a_duplicate_of_a_history_event_is_ignored(self, shipment_id: UUID) -> None:
        label = printed(shipment_id)
        manager = given_process(PickupDeadline, label).when(label).then_ignored()
        assert manager is not None
        assert manager.handled_event_ids == [label.event_id]

    def test_an_event_after_completion_is_ignored(self, shipment_id: UUID) -> None:
        given_process(PickupDeadline, printed(shipment_id), PickupScanned(shipment_id)).when(
            PickupDeadlinePassed(shipment_id)
        ).then_ignored()

    def test_an_advancing_event_of_no_process_is_ignored(self, shipment_id: UUID) -> None:
        assert given_process(PickupDeadline).when(PickupScanned(shipment_id)).then_ignored() is None

    def test_an_applied_event_fails_then_ignored_showing_what_it_did(
        self, shipment_id: UUID
    ) -> None:
        with pytest.raises(AssertionError, match="was applied; expected it to be ignored") as fail:
            given_process(PickupDeadline).when(printed(shipment_id)).then_ignored()
        assert "DecrementLabelStock(carrier='DHL')" in str(fail.value)


class TestGiven:
    def test_a_history_event_that_is_not_applied_fails_the_scenario(
        self, shipment_id: UUID
    ) -> None:
        """The history must start the process: an advancing event first is reported."""
        with pytest.raises(
            AssertionError, match=r"given: event 1 .* was not applied: it does not start"
        ):
            given_process(PickupDeadline, PickupScanned(shipment_id))

    def test_a_history_event_that_raises_fails_the_scenario(self, shipment_id: UUID) -> None:
        class Fussy(PickupDeadline):
            @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
            def refuse(self, event: LabelPrinted) -> None:
                raise DomainError("no labels today")

        with pytest.raises(
            AssertionError, match=r"given: event 1 .* raised DomainError: no labels"
        ):
            given_process(Fussy, printed(shipment_id))

    def test_events_of_another_process_are_refused(self, shipment_id: UUID) -> None:
        with pytest.raises(ValueError, match="a scenario follows one process"):
            given_process(PickupDeadline, printed(shipment_id), PickupScanned(uuid4()))
        with pytest.raises(ValueError, match=r"when: .* belongs to process"):
            given_process(PickupDeadline, printed(shipment_id)).when(PickupScanned(uuid4()))

    def test_what_the_manager_does_not_handle_is_refused(self, shipment_id: UUID) -> None:
        with pytest.raises(TypeError, match="when: PickupDeadline does not handle PickupMissed"):
            given_process(PickupDeadline).when(PickupMissed(shipment_id, "DHL"))
        with pytest.raises(TypeError, match="given: event 1: expected a DomainEvent, got 'x'"):
            given_process(PickupDeadline, "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="expected a ProcessManager subclass or a manager"):
            given_process(LabelPrinted)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]

    def test_a_key_the_handlers_would_refuse_is_refused(self) -> None:
        """A scenario does not start a process under a key no handler could store."""

        class Unkeyed(PickupDeadline):
            @ProcessManager.starts(LabelPrinted, key=lambda e: None)
            def label_printed(self, event: LabelPrinted) -> None: ...

        with pytest.raises(TypeError, match=r"when: the key= of .* read None"):
            given_process(Unkeyed).when(LabelPrinted(uuid4(), "DHL"))

    def test_when_is_called_once_and_before_then(self, shipment_id: UUID) -> None:
        scenario: ProcessScenario[PickupDeadline] = given_process(PickupDeadline)
        with pytest.raises(RuntimeError, match="call when"):
            scenario.then()
        scenario.when(printed(shipment_id))
        with pytest.raises(RuntimeError, match="already called"):
            scenario.when(printed(shipment_id))


class TestAsync:
    async def test_a_scenario_runs_in_an_async_test_and_its_manager_is_stored(
        self, shipment_id: UUID
    ) -> None:
        """Nothing is awaited: the manager it returns can then be committed by an async unit of work."""
        manager = (
            given_process(PickupDeadline)
            .when(printed(shipment_id))
            .then(commands=[DecrementLabelStock], scheduled=[deadline(shipment_id)])
        )
        store = InMemoryStore()
        uow = AsyncInMemoryUnitOfWork(store=store)
        async with uow:
            uow.repository(PickupDeadline).add(manager)
            await uow.commit()
        async with uow:
            stored = await uow.repository(PickupDeadline).require(shipment_id)
        assert stored.carrier == "DHL"
        (timer,) = store.scheduled()
        assert (timer.key, timer.due_at) == (deadline_key(shipment_id), PRINTED_AT + PICKUP_WINDOW)
