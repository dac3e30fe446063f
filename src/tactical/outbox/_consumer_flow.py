"""What every broker consumer loop does, written once for the sync and the async consumers.

:func:`consumer_loop` is the ``run`` loop of the RabbitMQ and Redis consumers, sync and
async: connect, consume until stopped, and on a failure close, log what failed and where,
back off and try again; the first success after failures is logged too. It yields
:class:`Step` operations (``connect``, ``consume``, ``close``) and the workers'
:class:`~tactical.outbox._worker.Stopped` and :class:`~tactical.outbox._worker.Wait`;
:func:`perform_sync` and :func:`perform_async` carry them out with the consumer's own steps.
:func:`amqp_delivery` is what a RabbitMQ consumer does with one delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from tactical._flow import Flow, run, run_async
from tactical._telemetry import NOOP
from tactical.outbox import _worker
from tactical.outbox._amqp_partitions import PartitionLocks, PartitionOp
from tactical.outbox._message import OutboxMessage, backoff_delay
from tactical.outbox._worker import Stopped, Wait

__all__ = [
    "Abandon",
    "AsyncConsuming",
    "BrokerSilent",
    "ConsumeOp",
    "Consuming",
    "Deliver",
    "GiveBack",
    "Handle",
    "LoopOp",
    "Receive",
    "Settle",
    "Silent",
    "Step",
    "Stopping",
    "amqp_consuming",
    "amqp_delivery",
    "check_inbox",
    "consumer_loop",
    "perform_async",
    "perform_sync",
]

_log = logging.getLogger("tactical.outbox")


def check_inbox(inbox: object, user: str, asynchronous: bool) -> None:
    """Refuse an inbox consumer of the other kind than the broker consumer ``user``.

    A sync broker consumer would acknowledge each message after calling an
    ``AsyncInboxConsumer``'s ``handle``, which only makes a coroutine that nothing awaits:
    every event lost. An async one would await what a sync ``handle`` returns, and fail.
    """
    awaits = inspect.iscoroutinefunction(getattr(inbox, "handle", None))
    if awaits and not asynchronous:
        raise TypeError(
            f"{user} calls its inbox's handle() without awaiting, but got "
            f"{type(inbox).__name__} {getattr(inbox, 'name', '')!r}, whose handle() is "
            f"async and would never run: give it an InboxConsumer, or use Async{user}"
        )
    if asynchronous and not awaits:
        raise TypeError(
            f"{user} awaits its inbox's handle(), but got {type(inbox).__name__} "
            f"{getattr(inbox, 'name', '')!r}, whose handle() is not async: give it an "
            f"AsyncInboxConsumer, or use {user.removeprefix('Async')}"
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One of the consumer's own steps: ``connect``, ``consume`` (until stopped) or ``close``."""

    name: str


LoopOp: TypeAlias = Step | Stopped | Wait


def consumer_loop(
    *,
    label: str,
    source: str,
    address: str,
    what_failed: Callable[[Exception], str],
    connected_is_up: bool,
    initial_backoff: float,
    max_backoff: float,
) -> Flow[LoopOp, None]:
    """Consume until stopped, reconnecting with bounded, jittered backoff after failures.

    Args:
        label: Who logs, e.g. ``RabbitMQ consumer billing``.
        source: What is consumed, e.g. ``queue 'billing'``.
        address: The broker's ``host:port``.
        what_failed: Describes a failure for the warning.
        connected_is_up: Whether a successful ``connect`` proves the broker is back (a
            RabbitMQ channel), or only a successful ``consume`` does (a Redis poll).
        initial_backoff: Seconds to wait after the first failure, doubling after each.
        max_backoff: The longest wait between attempts.
    """
    failures = 0
    _log.info("%s started on %s at %s", label, source, address)
    try:
        while not (yield Stopped()):
            try:
                yield Step("connect")
                if connected_is_up:
                    failures = _back(label, source, address, failures)
                yield Step("consume")
                failures = _back(label, source, address, failures)
            except Exception as error:
                failures += 1
                yield Step("close")
                delay = backoff_delay(failures, initial_backoff, max_backoff)
                _log.warning(
                    "%s: %s (attempt %d); retrying in %.1fs",
                    label,
                    what_failed(error),
                    failures,
                    delay,
                )
                yield Wait(delay)
    except GeneratorExit:
        raise
    except BaseException:
        # Cancelled (or interrupted): close as a stop would (a RabbitMQ connection, with
        # its locks and subscriptions; Redis leases), then go on up.
        try:
            yield Step("close")
        except Exception:
            _log.debug("%s: closing after a cancellation failed", label, exc_info=True)
        raise
    yield Step("close")
    _log.info("%s stopped", label)


def _back(label: str, source: str, address: str, failures: int) -> int:
    if failures:
        _log.info(
            "%s: consuming %s at %s again after %d failed attempt(s)",
            label,
            source,
            address,
            failures,
        )
    return 0


def perform_sync(
    stop: threading.Event, steps: Mapping[str, Callable[[], object]]
) -> Callable[[LoopOp], object]:
    """Carry :func:`consumer_loop`'s operations out with ``steps``, in a thread."""
    return _worker.perform_sync(stop, lambda step: steps[step.name]())


def perform_async(
    stop: asyncio.Event, steps: Mapping[str, Callable[[], Awaitable[object]]]
) -> Callable[[LoopOp], Awaitable[object]]:
    """Carry :func:`consumer_loop`'s operations out with ``steps``, on the event loop."""
    return _worker.perform_async(stop, lambda step: steps[step.name]())


class _Consuming(_worker.DocumentedRun):
    """What :class:`Consuming` and :class:`AsyncConsuming` share: the consumer's loop."""

    def _loop(self, initial_backoff: float, max_backoff: float) -> Flow[LoopOp, None]:
        """The consumer's ``run`` loop (see :func:`consumer_loop`)."""
        raise NotImplementedError


class Consuming(_Consuming):
    """The ``run`` of a sync broker consumer: :func:`consumer_loop` with its own steps."""

    def _steps(
        self, stop: threading.Event, poll_interval: float
    ) -> dict[str, Callable[[], object]]:
        """The consumer's ``connect``, ``consume`` (until ``stop``) and ``close``."""
        raise NotImplementedError

    def run(
        self,
        stop: threading.Event,
        *,
        poll_interval: float = 0.5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        """Consume until ``stop`` is set (each consumer documents its own)."""
        steps = self._steps(stop, poll_interval)
        run(self._loop(initial_backoff, max_backoff), perform_sync(stop, steps))


class AsyncConsuming(_Consuming):
    """The ``run`` of an async broker consumer: :func:`consumer_loop` with its own steps."""

    def _steps(
        self, stop: asyncio.Event, poll_interval: float
    ) -> dict[str, Callable[[], Awaitable[object]]]:
        """The consumer's ``connect``, ``consume`` (until ``stop``) and ``close``, awaited."""
        raise NotImplementedError

    async def run(
        self,
        stop: asyncio.Event,
        *,
        poll_interval: float = 0.5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        """Consume until ``stop`` is set (each consumer documents its own)."""
        steps = self._steps(stop, poll_interval)
        await run_async(self._loop(initial_backoff, max_backoff), perform_async(stop, steps))


# -- a RabbitMQ consumer's deliveries ------------------------------------------------------


class BrokerSilent(ConnectionError):
    """The broker sent nothing, not even a heartbeat, for longer than it promised."""


@dataclass(frozen=True, slots=True)
class Receive:
    """The next delivery, if one arrives within ``seconds``; else None."""

    seconds: float

    def start(self, target: Any) -> Any:
        return target.receive(self.seconds)


@dataclass(frozen=True, slots=True)
class Deliver:
    """Handle a delivery (see :func:`amqp_delivery`)."""

    delivery: Any

    def start(self, target: Any) -> Any:
        return target.deliver(self.delivery)


@dataclass(frozen=True, slots=True)
class Silent:
    """Seconds since the broker last sent anything (None: unknown); ``heard``: it just did."""

    heard: bool

    def start(self, target: Any) -> Any:
        return target.heard() if self.heard else target.silent_for()


@dataclass(frozen=True, slots=True)
class Abandon:
    """Give up the connection: the broker went silent (``error`` says so)."""

    error: BrokerSilent

    def start(self, target: Any) -> Any:
        return target.abandon(self.error)


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Cancel the consumer, requeueing what the broker sent ahead (quietly, bounded)."""

    def start(self, target: Any) -> Any:
        return target.give_back()


@dataclass(frozen=True, slots=True)
class Stopping:
    """Whether a stop was requested."""

    def start(self, target: Any) -> Any:
        return target.stopping()


ConsumeOp: TypeAlias = Receive | Deliver | Silent | Abandon | GiveBack | Stopping


def amqp_consuming(
    *,
    until_stopped: bool,
    idle_timeout: float,
    heartbeat: float,
    address: str,
    locks: PartitionLocks | None = None,
) -> Flow[ConsumeOp | PartitionOp, int]:
    """Handle deliveries until stopped, or until none came for ``idle_timeout`` seconds.

    With a negotiated heartbeat the broker sends something at least every half of it:
    nothing received for ``heartbeat`` seconds means the peer is gone (a fail-over, or a
    network that stopped forwarding) even if TCP still looks alive, and the connection is
    abandoned with :class:`BrokerSilent`. With ``locks`` (partitioned), the partitions held
    are balanced every ``locks.interval`` seconds, between deliveries, and given up at the
    end. Returns how many deliveries were handled.
    """
    count = 0
    last_delivery = time.monotonic()
    wait = min(idle_timeout, heartbeat / 2)
    if locks is not None:
        wait = min(wait, locks.interval)
    give_back = True  # not when stopping (closing cancels the consumer) nor when abandoned
    try:
        while True:
            if locks is not None and locks.due():
                yield from locks.balance()
            delivery = yield Receive(wait)
            if delivery is not None:
                yield Deliver(delivery)
                count += 1
                last_delivery = time.monotonic()
                # A delivery is news from the broker; the clock restarts after the handler,
                # which may have run longer than a heartbeat without I/O.
                yield Silent(heard=True)
            elif not until_stopped and time.monotonic() - last_delivery >= idle_timeout:
                break
            else:
                silent: float | None = yield Silent(heard=False)
                if silent is not None and silent > heartbeat:
                    give_back = False
                    error = BrokerSilent(
                        f"RabbitMQ at {address} sent nothing, not even a heartbeat, for "
                        f"{silent:.1f}s (heartbeat {heartbeat}s): the connection is dead"
                    )
                    yield Abandon(error)
                    raise error
            if until_stopped and (yield Stopping()):
                give_back = False
                break
    finally:
        if give_back:
            yield GiveBack()
            if locks is not None:
                try:
                    yield from locks.release_all()
                except Exception:  # closing the connection releases them anyway
                    _log.debug("giving the partitions up failed", exc_info=True)
    return count


# -- one RabbitMQ delivery --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handle:
    """Hand the message to the inbox consumer inside ``source``; its result is the outcome.

    ``source`` says where the delivery came from, for the inbox consumer's span (see
    :func:`tactical.outbox._telemetry.delivered`).
    """

    message: OutboxMessage
    source: contextlib.AbstractContextManager[None] = NOOP


@dataclass(frozen=True, slots=True)
class Settle:
    """Acknowledge the delivery, or reject it (back to the queue if ``requeue``)."""

    ack: bool
    requeue: bool = False


def amqp_delivery(
    *,
    label: str,
    queue: str,
    body: bytes,
    headers: Mapping[str, Any] | None,
    message_id: object,
    delivery_tag: object,
    check: Callable[[OutboxMessage], None] | None = None,
    source: contextlib.AbstractContextManager[None] = NOOP,
) -> Flow[Handle | Settle, None]:
    """Handle one delivery (inside ``source``) and acknowledge it after the inbox committed.

    A delivery that is not a tactical message is rejected without requeue (to the queue's
    dead-letter exchange if it has one) and logged with its id and the reason. If
    ``check(message)`` or handling raises, the delivery goes back to the queue and the
    error goes on up.
    """
    try:
        message = OutboxMessage.from_wire(body, dict(headers or {}))
    except Exception as error:  # any decode failure: the message is malformed
        _log.error(
            "%s rejected message %s (delivery tag %s) from queue %r without requeue: "
            "not a tactical event (%s: %s)",
            label,
            message_id,
            delivery_tag,
            queue,
            type(error).__name__,
            error,
        )
        yield Settle(ack=False, requeue=False)
        return
    try:
        if check is not None:
            check(message)
        yield Handle(message, source)
    except BaseException:
        yield Settle(ack=False, requeue=True)
        raise
    yield Settle(ack=True)
