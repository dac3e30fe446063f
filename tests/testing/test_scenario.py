"""The given/when/then scenario helper: it passes what is right and explains what is wrong."""

from __future__ import annotations

import re
from uuid import UUID, uuid4

import pytest

from tactical import AggregateRoot, DomainEvent, InvalidStateError
from tactical.testing import given


class Opened(DomainEvent):
    account_id: UUID


class Deposited(DomainEvent):
    account_id: UUID
    amount: int


class Account(AggregateRoot[UUID]):
    balance: int = 0
    open: bool = False
    note: str = ""

    def open_account(self) -> None:
        if self.open:
            raise InvalidStateError(f"Account {self.id} is already open")
        self.open = True
        self.record(Opened(self.id))

    def deposit(self, amount: int) -> None:
        if not self.open:
            raise InvalidStateError(f"Account {self.id} is not open")
        self.balance += amount
        self.record(Deposited(self.id, amount))

    def deposit_twice_recording_once(self, amount: int) -> None:
        self.balance += 2 * amount
        self.record(Deposited(self.id, amount))

    def scribble(self, note: str) -> None:
        self.note = note

    def refuse_after_changing(self) -> None:
        self.balance = -1
        raise InvalidStateError("refused too late")

    def refuse_after_recording(self) -> None:
        self.record(Deposited(self.id, 0))
        raise InvalidStateError("refused too late")


ACCOUNT_ID = uuid4()


def new_account() -> Account:
    return Account(ACCOUNT_ID)


class TestThen:
    def test_matching_events_pass_and_return_the_aggregate(self) -> None:
        """Events equal by type and fields pass, whatever their ids and times."""
        account = (
            given(new_account, Account.open_account)
            .when(lambda a: a.deposit(5))
            .then(Deposited(ACCOUNT_ID, 5))
        )
        assert account.balance == 5

    def test_history_events_are_not_expected(self) -> None:
        """Events recorded by the given history are cleared before the command runs."""
        account = given(new_account(), Account.open_account).when(lambda a: a.deposit(1))
        account.then(Deposited(ACCOUNT_ID, 1))

    def test_an_event_class_matches_any_event_of_that_type(self) -> None:
        """Passing a class instead of an instance checks only the type."""
        given(new_account).when(Account.open_account).then(Opened)

    def test_a_different_field_fails_naming_it(self) -> None:
        """A field mismatch names the event, the field, and both values."""
        scenario = given(new_account, Account.open_account).when(lambda a: a.deposit(5))
        with pytest.raises(AssertionError) as failure:
            scenario.then(Deposited(ACCOUNT_ID, 6))
        message = str(failure.value)
        assert "event 1 (Deposited) differs in amount: expected 6, got 5" in message
        assert "expected events:\n  1. Deposited(" in message
        assert "actual events:\n  1. Deposited(" in message
        assert "event_id" not in message

    def test_a_different_type_fails(self) -> None:
        """An event of another type fails, naming both types."""
        scenario = given(new_account).when(Account.open_account)
        with pytest.raises(AssertionError, match="event 1: expected Deposited, got Opened"):
            scenario.then(Deposited)

    def test_missing_or_extra_events_fail(self) -> None:
        """The number of events must match exactly."""
        with pytest.raises(AssertionError, match=r"expected 2 event\(s\), got 1"):
            given(new_account).when(Account.open_account).then(Opened, Opened)
        with pytest.raises(AssertionError, match=r"expected 0 event\(s\), got 1"):
            given(new_account).when(Account.open_account).then()

    def test_generated_fields_are_compared_on_request(self) -> None:
        """compare=("event_id",) makes a fresh event_id a mismatch."""
        scenario = given(new_account).when(Account.open_account)
        with pytest.raises(AssertionError, match="differs in event_id"):
            scenario.then(Opened(ACCOUNT_ID), compare=("event_id",))

    def test_compare_refuses_ordinary_fields(self) -> None:
        """Only generated fields can be named in compare: the others are always compared."""
        with pytest.raises(ValueError, match="compare takes"):
            given(new_account).when(Account.open_account).then(Opened, compare=("amount",))

    def test_an_unexpected_error_fails_with_its_message(self) -> None:
        """A command that raises when events were expected fails, showing the error."""
        scenario = given(new_account).when(lambda a: a.deposit(1))
        with pytest.raises(AssertionError, match=r"raised InvalidStateError: Account .* not open"):
            scenario.then(Deposited(ACCOUNT_ID, 1))

    def test_state_change_without_event_fails_when_strict(self) -> None:
        """require_events_for_changes catches a command that changes state silently."""
        given(new_account).when(lambda a: a.scribble("x")).then()
        with pytest.raises(AssertionError, match="changed the aggregate's state but recorded no"):
            given(new_account).when(lambda a: a.scribble("x")).then(require_events_for_changes=True)

    def test_then_no_events_passes_a_no_op(self) -> None:
        """A command that changes nothing and records nothing passes then_no_events."""
        account = given(new_account).when(lambda a: a.scribble("")).then_no_events()
        assert account.note == ""

    def test_failing_history_is_reported(self) -> None:
        """A history command that raises fails the scenario at given, naming the command."""
        with pytest.raises(AssertionError, match=r"history command 1 .* InvalidStateError"):
            given(new_account, lambda a: a.deposit(1))


class TestThenRaises:
    def test_expected_error_is_returned(self) -> None:
        """The expected error, with a matching message, is returned for more checks."""
        error = (
            given(new_account)
            .when(lambda a: a.deposit(1))
            .then_raises(InvalidStateError, match="is not open")
        )
        assert str(ACCOUNT_ID) in str(error)

    def test_message_must_match(self) -> None:
        """A message that does not match the pattern fails, showing both."""
        scenario = given(new_account).when(lambda a: a.deposit(1))
        with pytest.raises(AssertionError, match="does not match 'closed'"):
            scenario.then_raises(InvalidStateError, match="closed")

    def test_no_error_fails_and_shows_the_events(self) -> None:
        """A command that succeeds fails then_raises and lists what it recorded."""
        scenario = given(new_account).when(Account.open_account)
        with pytest.raises(AssertionError, match=re.compile(r"did not raise.*Opened", re.S)):
            scenario.then_raises(InvalidStateError)

    def test_another_error_type_fails(self) -> None:
        """An error of an unexpected type fails, naming both types."""
        scenario = given(new_account).when(lambda a: a.deposit(1))
        with pytest.raises(AssertionError, match="expected KeyError"):
            scenario.then_raises(KeyError)

    def test_a_refusal_after_a_change_fails(self) -> None:
        """A refused command must leave the aggregate as it was."""
        scenario = given(new_account).when(Account.refuse_after_changing)
        with pytest.raises(AssertionError, match="changed the aggregate first"):
            scenario.then_raises(InvalidStateError)

    def test_a_refusal_after_recording_fails(self) -> None:
        """A refused command must not leave events behind."""
        scenario = given(new_account).when(Account.refuse_after_recording)
        with pytest.raises(AssertionError, match="recorded events first"):
            scenario.then_raises(InvalidStateError)


class TestMisuse:
    def test_then_without_when_is_an_error(self) -> None:
        """then() before when() is a programming error, not a test failure."""
        with pytest.raises(RuntimeError, match="call when"):
            given(new_account).then()

    def test_when_twice_is_an_error(self) -> None:
        """A scenario has one command under test."""
        scenario = given(new_account).when(Account.open_account)
        with pytest.raises(RuntimeError, match="already called"):
            scenario.when(Account.open_account)

    def test_lambdas_are_described_by_their_source(self) -> None:
        """Failure messages quote the lambda's source line."""
        scenario = given(new_account).when(lambda a: a.deposit(7))
        with pytest.raises(AssertionError, match=r"a\.deposit\(7\)"):
            scenario.then()
