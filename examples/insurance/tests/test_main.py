"""``python -m examples.insurance`` runs its narrated scenario from a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def narrate() -> str:
    """Run ``python -m examples.insurance`` in a fresh process; its output."""
    # The same import path as this test's: the installed tactical (or src), and the examples.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "examples.insurance"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_narrated_scenario_runs_and_shows_the_refused_claim() -> None:
    """The demo exits 0 and narrates the refusal, billing and cancellation."""
    out = narrate()
    assert (
        "refused: InvariantViolation: Total pending claims 1100.00 GBP would exceed maximum" in out
    )
    assert "for 120.00 GBP (cracked tile); tried to cancel while it is pending" in out
    assert "refused: InvalidStateError: Cannot cancel policy with 1 pending claim(s)" in out
    assert "started a monthly schedule of 12 installments of 42.50 GBP" in out
    assert "Billing stopped the schedule from 2026-06-20: 4 installments billed" in out
    # 10 events for the first policy, 5 for the second: PolicyIssued, PaymentScheduleStarted,
    # PolicyRenewed, PaymentScheduleExtended, PolicyExpired; and the fired PolicyCoverageEnded,
    # which the in-process bus never saw (the relay hands it to the policy's inbox).
    assert "Outbox rows: 15 events, each written in the transaction of its change" in out
    assert "and 1 fired timer, written by the timer worker." in out
    published = re.search(r"Events published, in order: (.*)\n", out)
    assert published is not None
    assert len(published.group(1).split(", ")) == 15


def test_narrated_scenario_expires_a_policy_when_the_clock_passes_its_end() -> None:
    """The timer is stored on activation, moved by the renewal, fired once after the new end."""
    out = narrate()
    assert re.search(r"Timers stored with the activation: \S+ due 2027-07-01 00:00 UTC\n", out)
    assert re.search(r"under the same key: \S+ due 2028-07-01 00:00 UTC\n", out)
    assert "Billing, fed by PolicyRenewed, now bills until 2028-07-01: 24 installments." in out
    assert "the timer worker fired 0 timer(s): the policy is active." in out
    assert "2028-07-01 the clock passed the new end: the timer worker fired 1 timer(s)" in out
    assert "which expired the policy: it is expired." in out
    assert "A second round fires 0 timer(s): each timer fires once. Timers left: none." in out
    assert re.search(r"Policy \S+ is expired \(version 4\), covered 2026-07-01 to 2028-07-01", out)
    assert out.count("PolicyExpired") == 1
