"""Commands and the CommandBus: one handler per type, results and errors as they are, traces."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import warnings
from uuid import UUID, uuid4

import pytest

from tactical import (
    AsyncInMemoryUnitOfWork,
    Command,
    CommandBus,
    DomainEvent,
    EventBus,
    InMemoryStore,
    InMemoryUnitOfWork,
    JsonCodec,
    Trace,
    UnitOfWork,
    current_trace,
)
from tactical.testing import Counter, CounterTicked


class TickCounter(Command[int]):
    """Returns the counter's count after the tick."""

    counter_id: UUID


class OpenCounter(Command):
    name: str


class TickTwice(TickCounter):
    pass


def tick_counter(command: TickCounter, uow: UnitOfWork) -> int:
    with uow:
        counter = uow.repository(Counter).require(command.counter_id)
        counter.tick()
        uow.commit()
    return counter.count


def open_counter(command: OpenCounter, uow: UnitOfWork) -> None:
    with uow:
        uow.repository(Counter).add(Counter(command.command_id, command.name))
        uow.commit()


def wired(bus: EventBus | None = None) -> tuple[CommandBus, InMemoryUnitOfWork]:
    """A command bus whose handlers share one unit of work, the way a service layer wires it."""
    uow = InMemoryUnitOfWork(bus)
    commands = CommandBus()
    commands.register(TickCounter, functools.partial(tick_counter, uow=uow))
    commands.register(OpenCounter, functools.partial(open_counter, uow=uow))
    return commands, uow


class TestCommand:
    def test_is_a_frozen_dataclass_with_a_keyword_only_id(self) -> None:
        """Fields are positional, command_id is a fresh uuid4 unless given, nothing is assignable."""
        command = OpenCounter("visits")
        assert isinstance(command.command_id, UUID)
        assert command.command_id.version == 4
        assert OpenCounter("visits").command_id != command.command_id
        given = OpenCounter("visits", command_id=command.command_id)
        assert given == command
        assert hash(given) == hash(command)
        with pytest.raises(dataclasses.FrozenInstanceError, match="immutable"):
            command.name = "other"  # type: ignore[misc]
        assert [f.name for f in dataclasses.fields(command)] == ["command_id", "name"]

    def test_round_trips_through_the_json_codec(self) -> None:
        """A command can be stored (a timer, a process manager's request): JSON, no mapping."""
        codec = JsonCodec()
        command = TickCounter(uuid4())
        data = codec.encode(command)
        assert data == {
            "command_id": str(command.command_id),
            "counter_id": str(command.counter_id),
        }
        assert codec.decode(TickCounter, data) == command
        assert codec.loads(TickCounter, codec.dumps(command)) == command

    def test_the_base_class_is_not_a_command(self) -> None:
        """Command itself cannot be instantiated: each kind of command is a subclass."""
        with pytest.raises(TypeError, match="Command is a base class"):
            Command()

    def test_a_mutable_field_is_refused(self) -> None:
        """A command is immutable all the way down, as an event is."""
        with pytest.raises(TypeError, match="list"):

            class Tag(Command):
                names: list[str]


class TestRegister:
    def test_a_second_handler_for_a_command_type_names_both(self) -> None:
        """Exactly one handler per command type: the second is refused, naming each."""
        commands, _ = wired()

        def tick_again(command: TickCounter) -> int:
            return 0

        with pytest.raises(ValueError, match=r"TickCounter already has a handler, tick_counter"):
            commands.register(TickCounter, tick_again)
        with pytest.raises(ValueError, match="tick_again cannot be registered"):
            commands.register(TickCounter, tick_again)

    @pytest.mark.parametrize("command_type", [Command, CounterTicked, str])
    def test_only_command_subclasses_are_registered(self, command_type: object) -> None:
        """Command itself, an event or any other type is refused with its name."""
        with pytest.raises(TypeError, match="register\\(\\) takes a Command subclass"):
            CommandBus().register(command_type, print)  # type: ignore[call-overload]

    def test_a_handler_must_be_callable(self) -> None:
        """A non-callable handler is refused when registered, not when dispatched."""
        with pytest.raises(TypeError, match="handler for OpenCounter is not callable: 3"):
            CommandBus().register(OpenCounter, 3)  # type: ignore[call-overload]

    def test_handler_for_names_the_registered_handler(self) -> None:
        """handler_for returns what was registered for a type, None for another."""
        commands = CommandBus()
        commands.register(OpenCounter, print)
        assert commands.handler_for(OpenCounter) is print
        assert commands.handler_for(TickCounter) is None


class TestDispatch:
    def test_returns_the_handlers_result(self) -> None:
        """dispatch runs the one handler and hands back what it returned."""
        commands, uow = wired()
        open_command = OpenCounter("visits")
        assert commands.dispatch(open_command) is None
        assert commands.dispatch(TickCounter(open_command.command_id)) == 1
        assert commands.dispatch(TickCounter(open_command.command_id)) == 2
        with uow:
            assert uow.repository(Counter).require(open_command.command_id).count == 2

    def test_an_unregistered_command_is_a_lookup_error_naming_it(self) -> None:
        """No handler: a LookupError that says which command and how to register one."""
        with pytest.raises(LookupError, match=r"command OpenCounter \(register one with"):
            CommandBus().dispatch(OpenCounter("visits"))

    def test_a_subclass_of_a_registered_command_needs_its_own_handler(self) -> None:
        """Handlers are per exact type: a subclass is a command of its own."""
        commands, _ = wired()
        with pytest.raises(LookupError, match="TickTwice"):
            commands.dispatch(TickTwice(uuid4()))

    def test_anything_but_a_command_is_refused(self) -> None:
        """Dispatching a non-command is a TypeError naming it."""
        with pytest.raises(TypeError, match="dispatch\\(\\) takes a Command, got 'tick'"):
            CommandBus().dispatch("tick")  # type: ignore[arg-type]

    def test_a_handlers_error_propagates_as_it_is(self) -> None:
        """Nothing wraps, annotates or swallows the handler's exception."""
        commands = CommandBus()
        refusal = LookupError("no such counter")

        def refuse(command: TickCounter) -> int:
            raise refusal

        commands.register(TickCounter, refuse)
        with pytest.raises(LookupError) as raised:
            commands.dispatch(TickCounter(uuid4()))
        assert raised.value is refusal
        assert not hasattr(refusal, "__notes__")

    def test_events_of_a_handler_are_caused_by_the_command(self) -> None:
        """Outside any event handler, the command starts a flow: its id is both trace ids."""
        bus, traces = EventBus(), list[Trace | None]()
        bus.subscribe(CounterTicked, lambda event: traces.append(current_trace()))
        bus.subscribe(CounterTicked, lambda event: seen.append(event.event_id))
        seen: list[UUID] = []
        commands, uow = wired(bus)
        with uow:
            counter = Counter(uuid4(), "visits")
            uow.repository(Counter).add(counter)
            uow.commit()
        command = TickCounter(counter.id)
        commands.dispatch(command)
        assert current_trace() is None
        # The handler of the ticked event runs in the flow the command started.
        assert traces == [Trace(command.command_id, seen[0])]

    def test_a_command_dispatched_by_an_event_handler_stays_in_the_events_flow(self) -> None:
        """Within an event handler, the command's events keep the event's correlation id."""
        bus, commands = EventBus(), CommandBus()
        recorded: list[Trace | None] = []

        def note(command: OpenCounter) -> None:
            recorded.append(current_trace())

        commands.register(OpenCounter, note)
        bus.subscribe(CounterTicked, lambda event: commands.dispatch(OpenCounter("child")))
        ticked = CounterTicked(uuid4(), 1)
        bus.publish(ticked)
        (trace,) = recorded
        assert trace is not None
        assert trace.correlation_id == ticked.event_id
        assert trace.causation_id not in (None, ticked.event_id)


class TestAsyncHandlers:
    async def test_dispatch_async_awaits_async_handlers_and_calls_sync_ones(self) -> None:
        """Both kinds of handler answer dispatch_async with their result."""
        commands = CommandBus()

        async def count(command: TickCounter) -> int:
            await asyncio.sleep(0)
            assert current_trace() == Trace(command.command_id, command.command_id)
            return 7

        commands.register(TickCounter, count)
        commands.register(OpenCounter, lambda command: None)
        assert await commands.dispatch_async(TickCounter(uuid4())) == 7
        assert await commands.dispatch_async(OpenCounter("visits")) is None
        assert current_trace() is None

    def test_sync_dispatch_refuses_an_async_handler_before_calling_it(self) -> None:
        """No coroutine is made, so none is left un-awaited."""
        commands, called = CommandBus(), list[TickCounter]()

        async def count(command: TickCounter) -> int:
            called.append(command)
            return 7

        commands.register(TickCounter, count)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(TypeError, match=r"async handler .*count for TickCounter"):
                commands.dispatch(TickCounter(uuid4()))
        assert called == []

    def test_sync_dispatch_refuses_an_awaitable_result_and_closes_it(self) -> None:
        """A plain function returning a coroutine: refused, the coroutine closed, not leaked."""
        commands = CommandBus()

        async def later() -> int:
            return 7

        commands.register(TickCounter, lambda command: later())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(TypeError, match="returned an awaitable"):
                commands.dispatch(TickCounter(uuid4()))

    async def test_an_async_handler_using_the_unit_of_work_its_event_handler_entered(
        self,
    ) -> None:
        """An event handler dispatches a command that enters the same async unit of work."""
        store, bus, commands = InMemoryStore(), EventBus(), CommandBus()
        uow = AsyncInMemoryUnitOfWork(bus, store=store)
        target = Counter(uuid4(), "target")

        async def tick_target(command: TickCounter) -> int:
            async with uow:
                counter = await uow.repository(Counter).require(command.counter_id)
                counter.tick()
                await uow.commit()
            return counter.count

        async def propagate(event: DomainEvent) -> None:
            if isinstance(event, CounterTicked) and event.counter_id != target.id:
                assert await commands.dispatch_async(TickCounter(target.id)) == 1

        commands.register(TickCounter, tick_target)
        bus.subscribe(CounterTicked, propagate)
        async with uow:
            uow.repository(Counter).add(target)
            await uow.commit()
        source = Counter(uuid4(), "source")
        async with uow:
            uow.repository(Counter).add(source)
            source.tick()
            await uow.commit()
        async with AsyncInMemoryUnitOfWork(store=store) as reader:
            assert (await reader.repository(Counter).require(target.id)).count == 1
