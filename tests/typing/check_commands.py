"""Type-checked, never run: commands, and a CommandBus whose dispatch is typed by the command."""

from __future__ import annotations

import asyncio
import functools
from typing import assert_type
from uuid import UUID

from tactical import Command, CommandBus, InMemoryUnitOfWork, UnitOfWork


class Allocate(Command[str]):
    """Returns the reference of the batch the line went to."""

    order_id: str
    sku: str
    quantity: int


class AddBatch(Command):
    """A bare Command is Command[None]."""

    reference: str
    sku: str
    quantity: int


class CountBatches(Command[int]):
    sku: str


def allocate(command: Allocate, uow: UnitOfWork) -> str:
    return f"{command.sku}-{command.quantity}"


def add_batch(command: AddBatch) -> None:
    print(command.reference)


async def count_batches(command: CountBatches) -> int:
    await asyncio.sleep(0)
    return len(command.sku)


def count_wrongly(command: CountBatches) -> str:
    return command.sku


def handle_any(command: Command[str]) -> str:
    return str(command.command_id)


class Reserve(Command[str]):
    """Another command with Allocate's result type: its handlers are not Allocate's."""

    sku: str


def reserve(command: Reserve) -> str:
    return command.sku


async def reserve_async(command: Reserve) -> str:
    await asyncio.sleep(0)
    return command.sku


bus = CommandBus()
bus.register(Allocate, functools.partial(allocate, uow=InMemoryUnitOfWork()))
bus.register(AddBatch, add_batch)
bus.register(CountBatches, count_batches)
bus.register(Allocate, handle_any)  # a handler of a base command type takes its subclasses
bus.register(Allocate, lambda command: command.order_id)

# dispatch is typed by the command's result type.
assert_type(bus.dispatch(Allocate("order-1", "LAMP", 2)), str)
assert_type(bus.dispatch(AddBatch("batch-1", "LAMP", 100)), None)
assert_type(bus.dispatch(CountBatches("LAMP")), int)
line = Allocate("order-1", "LAMP", 2)
assert_type(line.command_id, UUID)
assert_type(line.quantity, int)


async def count() -> None:
    assert_type(await bus.dispatch_async(CountBatches("LAMP")), int)
    assert_type(await bus.dispatch_async(Allocate("order-1", "LAMP", 2)), str)
    bus.dispatch_async(AddBatch("b", "LAMP", 1))  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]


# Misuse the checkers reject.
bus.register(CountBatches, count_wrongly)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
bus.register(Allocate, add_batch)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
# A handler of another command type, though it returns the same type.
bus.register(Allocate, reserve)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
bus.register(Allocate, reserve_async)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
bus.register(Reserve, handle_any)
bus.register(str, handle_any)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
bus.dispatch("allocate")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
wrong: int = bus.dispatch(Allocate("order-1", "LAMP", 2))  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
line.quantity = 3  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
Allocate("order-1", "LAMP")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Allocate("order-1", "LAMP", 2, UUID(int=1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
