"""A process manager fed by an inbox consumer: in the inbox's transaction, its commands after.

:class:`ProcessFeed` is what :meth:`InboxConsumer.subscribe_process_manager
<tactical.outbox.InboxConsumer.subscribe_process_manager>` subscribes: the process
manager's decisions (:func:`tactical._process.applying`, the flow the in-process handlers
run) carried out on the inbox's own unit of work, whose one commit stores the inbox row,
the manager and its timers. The commands the manager asked for are handed back to the
inbox flow, which dispatches them once that commit is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tactical._commands import Command, CommandBus
from tactical._flow import Flow
from tactical._model import DomainEvent
from tactical._process import Add, Load, ProcessManager, applying, commands_of

__all__ = ["Dispatch", "LoadManager", "ProcessFeed"]

M = TypeVar("M", bound=ProcessManager[Any])


@dataclass(frozen=True, slots=True)
class LoadManager:
    """Load the manager stored under ``key`` through ``repository`` (it, or None)."""

    repository: Any
    key: object

    def start(self, _driver: Any) -> Any:
        return self.repository.get(self.key)

    def finish(self, raw: object) -> object:
        return raw


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Dispatch ``command`` through ``commands`` (awaited by the async consumer)."""

    commands: CommandBus
    command: Command[Any]

    def start(self, driver: Any) -> Any:
        return driver._dispatch(self.commands, self.command)

    def finish(self, _raw: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ProcessFeed(Generic[M]):
    """A process manager type subscribed to an inbox consumer, and where its commands go."""

    manager_type: type[M]
    commands: CommandBus

    def applying(self, event: DomainEvent, uow: Any) -> Flow[LoadManager, tuple[Dispatch, ...]]:
        """Apply ``event`` to its process in the inbox's ``uow``; the dispatches it asks for.

        Loads (or starts and adds) the manager and handles the event; the commit the
        decisions end with is the inbox's own, after every handler, so it is not done here.
        """
        repository = uow.repository(self.manager_type)
        decisions = applying(self.manager_type, event)
        answer: object = None
        try:
            while True:
                try:
                    op = decisions.send(answer)
                except StopIteration as stop:
                    manager: M | None = stop.value
                    break
                answer = None
                if isinstance(op, Load):
                    answer = yield LoadManager(repository, op.key)
                elif isinstance(op, Add):
                    repository.add(op.manager)
        finally:
            decisions.close()
        return tuple(Dispatch(self.commands, c) for c in commands_of(manager))
