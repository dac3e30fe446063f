"""Flows: logic that needs I/O, written once for the sync and the async API.

A flow is a generator that yields the I/O it needs as plain operation objects, receives each
operation's result (or has its exception thrown in at the ``yield``), and returns its own
result. The flow decides everything: what to read and write, what a result means, what to
do when an operation fails. A sync class drives it with :func:`run`, an async class with
:func:`run_async`; each supplies only ``perform``, which carries one operation out and
knows nothing of the logic. psycopg 3 shares its protocol between ``Connection`` and
``AsyncConnection`` the same way, and h11 calls it "sans-IO": no decision is written
twice, so the sync and async APIs cannot drift apart.

A flow that needs another flow calls it with ``yield from``. A flow that yields nothing
is still a generator (end it with an unreachable ``yield`` if it must be one) and runs
without a single call to ``perform``.

Cancellation: when an awaited operation raises (``asyncio.CancelledError`` included), the
exception is thrown into the flow, whose ``try``/``except``/``finally`` clean up exactly
as they would around a sync call (yielding the clean-up's own operations), then it goes on
up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeAlias, TypeVar, cast

__all__ = ["Flow", "run", "run_async", "run_unanswered"]

Op = TypeVar("Op")
R = TypeVar("R")

Flow: TypeAlias = Generator[Op, Any, R]
"""A generator yielding operations ``Op``, sent their results, returning ``R``."""


def run(flow: Flow[Op, R], perform: Callable[[Op], object]) -> R:
    """Drive ``flow`` to its end, carrying out each operation with ``perform``.

    Returns:
        What the flow returns.

    Raises:
        BaseException: Whatever the flow raises (an operation's exception it does not catch).
    """
    # One try around the whole drive rather than one a step: only the flow's end raises
    # StopIteration here (an operation's exception goes into the flow, and a StopIteration
    # leaving a generator is a RuntimeError), and a step costs no extra call or tuple.
    send = flow.send
    try:
        op = send(None)
        while True:
            try:
                result = perform(op)
            except BaseException as error:
                op = flow.throw(error)
            else:
                op = send(result)
    except StopIteration as stop:
        return cast("R", stop.value)


def run_unanswered(flow: Flow[Op, None], perform: Callable[[Op], object]) -> None:
    """:func:`run` for a flow that is sent no results and returns nothing, less its cost.

    ``next()`` drives such a flow, so its end raises no StopIteration (about 0.8 us less a
    flow); what ``perform`` raises is still thrown in at the ``yield``. The flow never yields
    None.
    """
    op = next(flow, None)
    while op is not None:
        try:
            perform(op)
        except BaseException as error:
            try:
                op = flow.throw(error)
            except StopIteration:
                return
        else:
            op = next(flow, None)


async def run_async(flow: Flow[Op, R], perform: Callable[[Op], Awaitable[object]]) -> R:
    """Drive ``flow`` to its end, awaiting ``perform`` for each operation.

    Returns:
        What the flow returns.

    Raises:
        BaseException: Whatever the flow raises (an operation's exception it does not catch,
            ``asyncio.CancelledError`` included).
    """
    # run()'s drive, one step at a time: the next step sends the operation's result, or
    # throws its exception in; only the flow's end raises StopIteration.
    step: Callable[[Any], Any] = flow.send
    value: Any = None
    while True:
        try:
            op = step(value)
        except StopIteration as stop:
            return cast("R", stop.value)
        try:
            value, step = await perform(op), flow.send
        except BaseException as error:
            value, step = error, flow.throw
