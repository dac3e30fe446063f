"""The pika connection under :mod:`tactical.outbox.rabbitmq`: one confirm-mode channel.

pika ships no type information (no py.typed, no stubs): it is used through ``Any`` here and in
:mod:`tactical.outbox.rabbitmq`, and no other module touches it.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tactical._extras import missing_extra
from tactical.outbox._amqp import amqp_properties, broker_address
from tactical.outbox._broker_partitions import partition_routing_key
from tactical.outbox._message import OutboxMessage

__all__ = [
    "AmqpMessage",
    "BrokerSilent",
    "ConfirmedChannel",
    "Silence",
    "amqp_message",
    "answer_within",
    "broker_address",
    "connection_parameters",
    "describe_error",
]

try:
    pika: Any = importlib.import_module("pika")
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.outbox.rabbitmq", "rabbitmq") from _missing
pika_exceptions: Any = importlib.import_module("pika.exceptions")
pika_spec: Any = importlib.import_module("pika.spec")

_log = logging.getLogger("tactical.outbox")

# pika logs several ERROR lines (with tracebacks) for every refused or lost connection, which
# tactical reports once, with the cause, on "tactical.outbox". Unless the application gave
# the "pika" logger a level of its own, only pika's CRITICAL lines are let through.
_pika_log = logging.getLogger("pika")
if _pika_log.level == logging.NOTSET:
    _pika_log.setLevel(logging.CRITICAL)


def connection_parameters(url: str, *, timeout: float, heartbeat: int | None = None) -> Any:
    """pika connection parameters for ``url``, failing fast (one attempt, ``timeout`` s).

    ``heartbeat`` (seconds) is proposed to the broker; None accepts the broker's.
    """
    parameters = pika.URLParameters(url)
    if heartbeat is not None:
        parameters.heartbeat = heartbeat
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.blocked_connection_timeout = timeout * 6
    return parameters


def describe_error(error: BaseException) -> str:
    """``error``'s type and message, with the underlying cause where pika wraps one.

    pika raises ``AMQPConnectionError()`` with no text, or with wrappers (themselves without
    text, holding it as ``.exception``) around the real cause, a refused socket say, as their
    only argument.
    """
    cause = error
    seen = {id(error)}  # a chain that loops back ends where it started again
    while True:
        inner = [a for a in cause.args if isinstance(a, BaseException)]
        wrapped: object = getattr(cause, "exception", None)  # pika's connector errors
        if isinstance(wrapped, BaseException):
            inner.append(wrapped)
        if str(cause) and not (inner and isinstance(cause, pika_exceptions.AMQPConnectionError)):
            break
        following = inner[0] if inner else cause.__cause__
        if following is None or id(following) in seen:
            break
        seen.add(id(following))
        cause = following
    text = str(cause)
    if cause is not error:
        text = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class BrokerSilent(ConnectionError):
    """The broker sent nothing, not even a heartbeat, for longer than it promised."""


@contextmanager
def answer_within(connection: Any, seconds: float, what: str) -> Generator[None, None, None]:
    """Bound a blocking request on a pika ``BlockingConnection`` to ``seconds``.

    BlockingConnection waits for the broker's answer for ever (or until a heartbeat is
    missed, up to twice the heartbeat plus 10 s). If none came in time, the connection's
    stream is dropped with a :class:`BrokerSilent` error, which the blocked call raises.
    pika has no public call for either step, so its connection's own timer and teardown
    are used (as pika's heartbeat checker does).
    """
    impl = connection._impl

    def give_up() -> None:
        if not impl.is_closed:
            impl._terminate_stream(
                BrokerSilent(f"no answer from RabbitMQ while {what} within {seconds}s")
            )

    timer = impl._adapter_call_later(seconds, give_up)
    try:
        yield
    finally:
        impl._adapter_remove_timeout(timer)


class Silence:
    """Measures how long a consuming ``BlockingConnection`` has received nothing at all."""

    def __init__(self, connection: Any) -> None:
        self._impl = connection._impl
        self._received = self._impl.bytes_received
        self._heard = time.monotonic()

    def heard(self) -> None:
        """The broker was just heard from (a delivery): restart the silence clock."""
        self._received, self._heard = self._impl.bytes_received, time.monotonic()

    def silent_for(self) -> float:
        """Seconds since the last byte arrived."""
        received = self._impl.bytes_received
        now = time.monotonic()
        if received != self._received:
            self._received, self._heard = received, now
        return now - self._heard

    def abandon(self, error: BaseException) -> None:
        """Drop the connection's stream with ``error`` (pika has no public call for it)."""
        if not self._impl.is_closed:
            self._impl._terminate_stream(error)


class _Refused(Exception):
    """The broker nacked or returned messages, or did not answer in time."""


class ConfirmedChannel:
    """A pika SelectConnection with one confirm-mode channel, driven synchronously.

    pika's BlockingChannel waits for each confirm before sending the next message (one
    round trip, and one disk sync of the broker, per message); driving the asynchronous
    connection's I/O loop until every outstanding delivery tag is confirmed sends a whole
    batch first and waits once, through pika's public callback API only.
    """

    def __init__(self, parameters: Any, *, exchange: str, declare: bool, timeout: float) -> None:
        self._exchange = exchange
        self._declare = declare
        self._timeout = timeout
        self._failure: BaseException | str | None = None
        self._hung = False
        self._channel: Any = None
        self._ready = False
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._nacked: list[int] = []
        self._returned: list[str] = []
        self._connection: Any = pika.SelectConnection(
            parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
        )
        try:
            self._run(lambda: self._ready, "connecting")
        except BaseException:
            self.close()
            raise

    def _healthy(self) -> bool:
        return self._failure is None and bool(self._connection.is_open)

    def is_usable(self) -> bool:
        if not self._healthy():
            return False
        # Take in whatever arrived while idle (heartbeats, or the broker closing an idle
        # connection), so that a dropped connection is replaced before anything is sent.
        self._connection.ioloop.call_later(0, self._connection.ioloop.stop)
        self._connection.ioloop.start()
        return self._healthy()

    def publish(self, messages: Sequence[AmqpMessage], *, mandatory: bool) -> None:
        self._nacked, self._returned = [], []
        for message in messages:
            self._channel.basic_publish(
                exchange=self._exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=message.properties,
                mandatory=mandatory,
            )
            self._outstanding.add(self._next_tag)
            self._next_tag += 1
        self._run(lambda: not self._outstanding, f"confirming {len(messages)} message(s)")
        if self._nacked:
            raise _Refused(f"the broker nacked {len(self._nacked)} message(s)")
        if self._returned:
            raise _Refused(
                f"UnroutableError: no queue is bound for {len(self._returned)} message(s) "
                f"(event ids {', '.join(self._returned[:3])})"
            )

    def close(self) -> None:
        connection = self._connection
        try:
            # A broker that stopped answering would not answer the close either.
            if not self._hung and not connection.is_closed and not connection.is_closing:
                connection.close()
            if not self._hung and not connection.is_closed:
                self._run(lambda: connection.is_closed, "closing", closing=True)
            if not connection.is_closed:
                # Drop the socket: pika releases an unanswered connection's socket only at
                # garbage collection. pika has no public call for this (BlockingConnection
                # has the same gap), so its own teardown is used, with a reason (pika's
                # teardown asserts that one was given).
                connection._terminate_stream(_Refused(f"gave up: {self._failure}"))
                self._run(lambda: connection.is_closed, "aborting", closing=True)
        except Exception:
            _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)
        finally:
            connection.ioloop.close()

    def _run(self, done: Callable[[], bool], what: str, *, closing: bool = False) -> None:
        loop = self._connection.ioloop
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            loop.stop()

        timer = loop.call_later(self._timeout, expire)
        try:
            while not done() and (closing or self._failure is None) and not timed_out:
                loop.start()
        finally:
            loop.remove_timeout(timer)
        if closing:
            return
        if self._failure is not None:
            failure = self._failure
            if isinstance(failure, BaseException):
                raise failure
            raise _Refused(f"{what} failed: {failure}")
        if timed_out and not done():
            self._hung = True
            self._failure = f"no answer while {what} within {self._timeout}s"
            raise _Refused(f"no answer from the broker while {what} within {self._timeout}s")

    # -- callbacks (run inside the I/O loop) -----------------------------------------------

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: Any, error: BaseException | str) -> None:
        self._failure = error
        connection.ioloop.stop()

    def _on_connection_closed(self, connection: Any, reason: BaseException) -> None:
        if self._failure is None:
            self._failure = reason
        connection.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        if self._declare:
            channel.exchange_declare(
                exchange=self._exchange,
                exchange_type="topic",
                durable=True,
                callback=self._select_confirms,
            )
        else:
            self._select_confirms()

    def _select_confirms(self, _frame: Any = None) -> None:
        self._channel.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=self._on_confirms_selected
        )

    def _on_confirms_selected(self, _frame: Any) -> None:
        self._ready = True
        self._connection.ioloop.stop()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        if self._failure is None:
            self._failure = reason
        self._connection.ioloop.stop()

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.append(str(properties.message_id))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        confirmed = {t for t in self._outstanding if t <= tag} if method.multiple else {tag}
        self._outstanding -= confirmed
        if method.NAME == "Basic.Nack":
            self._nacked.extend(sorted(confirmed))
        if not self._outstanding:
            self._connection.ioloop.stop()


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """An outbox message in AMQP form, checked to be encodable before anything is sent."""

    routing_key: str
    body: bytes
    properties: Any


def amqp_message(
    message: OutboxMessage, *, exchange: str, mandatory: bool, partitions: int | None = None
) -> AmqpMessage:
    """The AMQP form of ``message``, encoded once here so that pika cannot refuse it mid-batch.

    Raises:
        Exception: The message cannot be carried by AMQP (``UnicodeEncodeError`` for a lone
            surrogate in the payload, pika's ``ShortStringTooLong`` for a routing key or type
            over 255 UTF-8 bytes): a failure of this message alone, whenever it is sent.
    """
    properties = pika.BasicProperties(**amqp_properties(message, partitions))
    properties.encode()
    routing_key = partition_routing_key(message, partitions)
    pika_spec.Basic.Publish(
        exchange=exchange, routing_key=routing_key, mandatory=mandatory
    ).encode()
    return AmqpMessage(routing_key, message.body, properties)
