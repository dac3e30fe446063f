"""Telling async callables from sync ones, and disposing of an awaitable nobody will await."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["awaited", "discard_awaitable", "is_async_callable", "name_of"]


def is_async_callable(candidate: Callable[..., Any]) -> bool:
    """Whether calling ``candidate`` gives a coroutine to await.

    True for an ``async def`` function or method, a ``functools.partial`` of one, an object
    whose ``__call__`` is ``async def``, and anything marked with
    ``inspect.markcoroutinefunction`` (Python 3.12+). A plain function that happens to return
    an awaitable cannot be told apart before it is called.
    """
    while isinstance(candidate, functools.partial):
        candidate = candidate.func
    if inspect.iscoroutinefunction(candidate):
        return True
    if inspect.isfunction(candidate) or inspect.ismethod(candidate):
        return False
    call = getattr(type(candidate), "__call__", None)  # noqa: B004  (the class's, not the instance's)
    return call is not None and inspect.iscoroutinefunction(call)


def discard_awaitable(result: object) -> bool:
    """Close ``result`` if it is an awaitable that will never be awaited; whether it was one.

    Closing a coroutine (or anything with ``close()``) that never started silences
    Python's "coroutine ... was never awaited" warning: the caller reports the mistake itself.
    """
    if not inspect.isawaitable(result):
        return False
    close = getattr(result, "close", None)
    if callable(close):
        close()
    return True


async def awaited(result: Awaitable[T]) -> T:
    """``result``, awaited: the perform of an async driver whose flow yields awaitables."""
    return await result


def name_of(handler: Callable[..., Any]) -> str:
    """What an error message calls ``handler``: its qualified name, else its repr.

    A ``functools.partial`` (a handler given its dependencies) is named after its function.
    """
    while isinstance(handler, functools.partial):
        handler = handler.func
    return getattr(handler, "__qualname__", None) or repr(handler)
