"""Type-checked, never run: what a downstream user's checker sees of async units of work."""

from __future__ import annotations

from typing import assert_type
from uuid import UUID, uuid4

from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    AsyncRepository,
    AsyncUnitOfWork,
    EventBus,
    InMemoryStore,
    InMemoryUnitOfWork,
)


class Policy(AggregateRoot[UUID]):
    holder: str


class PolicyUnitOfWork(AsyncInMemoryUnitOfWork):
    @property
    def policies(self) -> AsyncRepository[Policy, UUID]:
        return self.repository(Policy)


async def rename_holder(uow: AsyncUnitOfWork, policy_id: UUID, holder: str) -> None:
    async with uow:
        policy = await uow.repository(Policy).require(policy_id)
        policy.holder = holder
        await uow.commit()


async def use(store: InMemoryStore, bus: EventBus) -> None:
    uow = PolicyUnitOfWork(bus, store=store)
    async with uow as entered:
        assert_type(entered, PolicyUnitOfWork)
        assert_type(uow.policies, AsyncRepository[Policy, UUID])
        assert_type(await uow.policies.get(uuid4()), Policy | None)
        assert_type(await uow.policies.require(uuid4()), Policy)
        assert_type(uow.repository(Policy), AsyncRepository[Policy, UUID])
        assert_type(uow.policies.add(Policy(uuid4(), "ada")), None)
        await uow.policies.get("not a uuid")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        await uow.policies.add(Policy(uuid4(), "bob"))  # type: ignore[func-returns-value, misc]  # pyright: ignore[reportGeneralTypeIssues]
        uow.commit()  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
        await uow.rollback()
        await uow.commit()
    await rename_holder(uow, uuid4(), "ada")
    await rename_holder(InMemoryUnitOfWork(), uuid4(), "ada")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    async with InMemoryUnitOfWork():  # type: ignore[attr-defined]  # pyright: ignore[reportGeneralTypeIssues]
        pass
    with AsyncInMemoryUnitOfWork():  # type: ignore[attr-defined]  # pyright: ignore[reportGeneralTypeIssues]
        pass
    as_protocol: AsyncUnitOfWork = AsyncInMemoryUnitOfWork(allow_multiple_aggregates=True)
    await rename_holder(as_protocol, uuid4(), "bob")
    AsyncInMemoryUnitOfWork(None, store)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
