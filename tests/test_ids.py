"""tactical's UUID version 7 (RFC 9562), the default of DomainEvent.event_id."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import pytest

from tactical import _ids
from tactical._ids import uuid7


def _restore_generator_state_after(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test that moves the clock ahead leaves the generator's last millisecond as it was.
    monkeypatch.setattr(_ids, "_last_ms", _ids._last_ms)  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(_ids, "_last_counter", _ids._last_counter)  # pyright: ignore[reportPrivateUsage]


def test_layout_is_rfc_9562_version_7() -> None:
    """Version 7, RFC variant, and the first 48 bits are the Unix time in milliseconds."""
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert before <= made.int >> 80 <= after


def test_ids_increase_in_order_made_also_as_text() -> None:
    """Ids made one after another increase, as numbers and as the hex SQLite stores."""
    made = [uuid7() for _ in range(20_000)]  # many per millisecond: the counter orders them
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert [u.hex for u in made] == sorted(u.hex for u in made)
    assert [str(u) for u in made] == sorted(str(u) for u in made)


def test_a_clock_stepping_back_does_not_make_smaller_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the wall clock goes back, ids keep counting from the last millisecond seen."""
    _restore_generator_state_after(monkeypatch)
    now = [time.time_ns() + 10**9]  # a second ahead of anything made so far
    monkeypatch.setattr(_ids, "time_ns", lambda: now[0])
    first = uuid7()
    now[0] -= 5 * 10**9
    later = [uuid7() for _ in range(3)]
    assert [first, *later] == sorted({first, *later})
    assert {u.int >> 80 for u in later} == {first.int >> 80}


def test_a_full_counter_moves_to_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the 42-bit counter at its end, the next id takes the next millisecond."""
    _restore_generator_state_after(monkeypatch)
    ms = time.time_ns() // 1_000_000 + 60_000
    monkeypatch.setattr(_ids, "time_ns", lambda: ms * 1_000_000)
    first = uuid7()
    monkeypatch.setattr(_ids, "_last_counter", (1 << 42) - 1)
    following = uuid7()
    assert following > first
    assert (first.int >> 80, following.int >> 80) == (ms, ms + 1)
    assert following.version == 7


def test_threads_get_distinct_increasing_ids() -> None:
    """Ids made on several threads at once are distinct, and increase on each thread."""
    per_thread: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(into: list[uuid.UUID]) -> None:
        into.extend(uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(ids,)) for ids in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(ids == sorted(ids) for ids in per_thread)
    assert len({u for ids in per_thread for u in ids}) == 20_000


def _made_in_child(queue: multiprocessing.Queue[str]) -> None:
    queue.put(str(uuid7()))


def test_a_child_forked_while_the_lock_is_held_makes_ids() -> None:
    """A process forked while another thread was making an id does not wait for it forever."""
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    with _ids._lock:  # pyright: ignore[reportPrivateUsage]
        child = context.Process(target=_made_in_child, args=(queue,))
        child.start()
    made = uuid.UUID(queue.get(timeout=30))
    child.join(timeout=30)
    assert (child.exitcode, made.version) == (0, 7)
