"""What the scaling benchmarks need around their worker processes: replies, CPU, rows.

The ``relay`` and ``consumers`` groups run their relays and consumers as separate OS
processes (``python -m benchmarks._relay_worker`` / ``benchmarks._consumer_worker``),
configured by their arguments (no pickled objects cross), and time a drain from the
parent. To say what limits the scaling on a small machine, each drain is also measured in
CPU seconds, read from ``/proc`` (Linux; elsewhere those figures are left out): the worker
processes', their PostgreSQL server processes' (found by ``application_name``), the
broker's (``redis-server``, RabbitMQ's ``beam.smp``, when they run on this machine), and
how busy the whole machine was (``/proc/stat``, every process of every user).
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from benchmarks._harness import Comparison

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CORES = os.cpu_count() or 1


def spawn(module: str, *arguments: str) -> subprocess.Popen[bytes]:
    """Start ``python -m module arguments`` with pipes for its commands and replies."""
    # sys.executable with the benchmark's own arguments, not user input.
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", module, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() on the pipe sees every reply not yet read
    )


def reply(worker: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """The next line ``worker`` prints, waited for at most ``timeout`` seconds.

    Raises:
        TimeoutError: Nothing came in time.
        RuntimeError: The worker exited (its exit status is in the message).
    """
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"worker {worker.pid} did not answer within {timeout:.0f}s")
    line = worker.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"worker {worker.pid} exited with status {worker.wait(10)}")
    return line


def send(workers: Iterable[subprocess.Popen[bytes]], command: str) -> None:
    """Write the line ``command`` to every worker, one after the other (microseconds)."""
    data = f"{command}\n".encode()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(data)


def stop(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    """End the workers: their stdin closes (they exit), or they are terminated."""
    for worker in workers:
        if worker.stdin is not None:
            worker.stdin.close()
    for worker in workers:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.terminate()
            worker.wait(20)
        if worker.stdout is not None:
            worker.stdout.close()


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds the processes ``pids`` have used (0 for those gone)."""
    total = 0
    for pid in pids:
        try:
            fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


def named_pids(*names: str) -> list[int]:
    """The processes of this machine whose command name is one of ``names``."""
    found: list[int] = []
    if not _PROC.is_dir():
        return found
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_busy() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (``/proc/stat``), or zeros."""
    try:
        first = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0, 0
    ticks = [int(value) for value in first[:8]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def backend_pids(engine: sa.Engine, prefix: str) -> list[int]:
    """The PostgreSQL server processes of the connections whose application name starts so."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE :prefix "
                "AND pid <> pg_backend_pid()"
            ),
            {"prefix": f"{prefix}%"},
        )
        return [int(pid) for (pid,) in rows]


@dataclass
class Window:
    """The CPU seconds of some processes over one drain, and how busy the machine was."""

    groups: Mapping[str, Sequence[int]]
    _cpu: dict[str, float] = field(default_factory=dict[str, float])
    _machine: tuple[int, int] = (0, 0)
    _started: float = 0.0
    used: dict[str, float] = field(default_factory=dict[str, float])
    wall: float = 0.0
    machine_cores: float = 0.0

    def __enter__(self) -> Window:
        self._cpu = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        self._machine = machine_busy()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self._started
        busy, total = machine_busy()
        if total > self._machine[1]:
            self.machine_cores = CORES * (busy - self._machine[0]) / (total - self._machine[1])
        self.used = {
            name: cpu_seconds(pids) - self._cpu[name] for name, pids in self.groups.items()
        }


@dataclass
class Drain:
    """One timed drain: its wall seconds, CPU seconds by group of processes, the machine."""

    seconds: float
    cpu: dict[str, float]
    machine_cores: float


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile (all three the value, for one value)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def scaling_row(
    group: str,
    name: str,
    against: str,
    drains: Sequence[Drain],
    baseline: Sequence[Drain],
    events: int,
) -> Comparison:
    """A table row: the time per event of ``drains`` against ``baseline`` (paired rounds).

    The ratio is the median of the per-round ratios of wall time, with its quartiles; the
    CPU ratio is the median of the per-round ratios of the CPU seconds every measured
    process used (workers, their PostgreSQL server processes, the broker): above 1, more
    processes spend more CPU per event.
    """
    q1, ratio, q3 = quartiles(
        [d.seconds / b.seconds for d, b in zip(drains, baseline, strict=True)]
    )
    cpu = [
        sum(d.cpu.values()) / sum(b.cpu.values())
        for d, b in zip(drains, baseline, strict=True)
        if sum(b.cpu.values()) > 0
    ]
    return Comparison(
        group,
        name,
        "PostgreSQL",
        against,
        candidate_ns=statistics.median(d.seconds for d in drains) / events * 1e9,
        baseline_ns=statistics.median(b.seconds for b in baseline) / events * 1e9,
        ratio=ratio,
        ratio_q1=q1,
        ratio_q3=q3,
        rounds=len(drains),
        calls_per_round=events,
        cpu_ratio=statistics.median(cpu) if cpu else None,
    )


def describe(count: int, what: str, drains: Sequence[Drain], events: int) -> str:
    """A note: events per second, where the CPU went per event, and the rate it would allow.

    That rate is what ``count`` processes could reach if the machine's cores were theirs:
    one process waits for its PostgreSQL server process and the broker at every step, so
    its work and theirs add up on one core; several spread that work over at most all the
    cores (CPU seconds per event from this run, which a loaded machine inflates).
    """
    seconds = statistics.median(d.seconds for d in drains)
    per_event = {
        name: statistics.median(d.cpu[name] for d in drains) / events * 1e6
        for name in drains[0].cpu
    }
    ours = sum(statistics.median(d.cpu[n] for d in drains) for n in drains[0].cpu) / seconds
    machine = statistics.median(d.machine_cores for d in drains)
    spent = ", ".join(f"{name} {us:,.0f}" for name, us in per_event.items())
    total = sum(per_event.values())
    ceiling = f"{min(count, CORES) / total * 1e6:,.0f}" if total else "?"
    return (
        f"{count} {what}: {events / seconds:,.0f} events/s ({seconds:.2f}s for {events:,}); "
        f"CPU us per event: {spent}; these kept {ours:.2f} of {CORES} cores busy, "
        f"the whole machine {machine:.2f}; with {min(count, CORES)} idle core(s) of their "
        f"own, at that CPU per event: at most {ceiling} events/s"
    )


def limit(what: str, drains: Mapping[int, Sequence[Drain]]) -> str:
    """A note: what held the processes back, read from their CPU figures (see ``describe``).

    ``drains`` maps each process count to its drains. One process that keeps most of a core
    busy (with its PostgreSQL server process and the broker) is bound by its own core; more
    processes that, with the rest of the machine's work, keep every core busy are bound by
    the machine's CPU; processes that keep far fewer cores busy than they could wait on
    something else (commits, the broker, partitions they do not own).
    """
    said: list[str] = []
    for count, rounds in sorted(drains.items()):
        seconds = statistics.median(d.seconds for d in rounds)
        ours = sum(statistics.median(d.cpu[n] for d in rounds) for n in rounds[0].cpu) / seconds
        machine = statistics.median(d.machine_cores for d in rounds)
        usable = min(count, CORES)
        if machine >= 0.9 * CORES and ours < 0.9 * usable:
            cause = f"the machine's CPU ({machine:.1f} of {CORES} cores busy, {ours:.1f} theirs)"
        elif ours >= 0.75 * usable:
            cause = f"their own CPU ({ours:.1f} of the {usable} core(s) they can use)"
        else:
            cause = (
                f"waiting ({ours:.1f} of {usable} core(s) busy, the machine {machine:.1f}): "
                "on commits, the broker, or partitions held by others"
            )
        said.append(f"{count}: {cause}")
    return f"{what}, what held them back: " + "; ".join(said)
