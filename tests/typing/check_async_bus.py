"""Type-checked, never run: async event handlers, and retry_on_conflict on async functions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, assert_type
from uuid import UUID, uuid4

from tactical import DomainEvent, EventBus, retry_on_conflict


class PolicyIssued(DomainEvent):
    policy_id: UUID


class ClaimFiled(DomainEvent):
    claim_id: UUID


def on_issued(event: PolicyIssued) -> None:
    print(event.policy_id)


async def on_issued_async(event: PolicyIssued) -> None:
    await asyncio.sleep(0)


async def on_any_event(event: DomainEvent) -> str:
    return str(event.event_id)


async def on_claim_async(event: ClaimFiled) -> None:
    await asyncio.sleep(0)


def on_claim(event: ClaimFiled) -> None:
    print(event.claim_id)


bus = EventBus()
bus.subscribe(PolicyIssued, on_issued)
bus.subscribe(PolicyIssued, on_issued_async)
bus.subscribe(PolicyIssued, on_any_event)
bus.subscribe(PolicyIssued, on_claim)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
bus.subscribe(PolicyIssued, on_claim_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(bus.has_async_handlers([PolicyIssued, ClaimFiled]), bool)
assert_type(bus.require_sync_handlers([PolicyIssued]), None)


async def publish_issued(event: PolicyIssued) -> None:
    assert_type(await bus.publish_async(event), None)
    assert_type(await bus.publish_all_async([event, ClaimFiled(uuid4())]), None)
    bus.publish_async(event)  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
    bus.publish_all_async([event])  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]


@retry_on_conflict
async def approve(claim_id: UUID, *, note: str = "") -> int:
    return len(note)


async def approve_once(claim_id: UUID) -> str:
    return str(claim_id)


approve_patiently = retry_on_conflict(
    approve_once,
    attempts=20,
    base_delay=0.1,
    max_delay=2.0,
    sleep=asyncio.sleep,
    random=lambda: 0.5,
)


async def approve_claims() -> None:
    assert_type(await approve(uuid4()), int)
    assert_type(await approve(uuid4(), note="urgent"), int)
    pending: Coroutine[Any, Any, int] = approve(uuid4())
    await pending
    assert_type(await approve_patiently(uuid4()), str)
    await approve("not a claim id")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await approve(uuid4(), notes="x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    approve(uuid4())  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
    retry_on_conflict(approve_once, sleep=time.sleep)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]


def count_claims() -> int:
    return 1


assert_type(retry_on_conflict(count_claims, sleep=lambda seconds: None), int)
retry_on_conflict(count_claims, sleep=asyncio.sleep)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType]
