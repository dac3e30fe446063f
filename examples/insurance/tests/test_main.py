"""``python -m examples.insurance`` runs its narrated scenario from a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_narrated_scenario_runs_and_shows_the_refused_claim() -> None:
    """The demo exits 0 and narrates the refusal, billing and cancellation."""
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
    out = result.stdout
    assert (
        "refused: InvariantViolation: Total pending claims 1100.00 GBP would exceed maximum" in out
    )
    assert "for 120.00 GBP (cracked tile); tried to cancel while it is pending" in out
    assert "refused: InvalidStateError: Cannot cancel policy with 1 pending claim(s)" in out
    assert "started a monthly schedule of 12 installments of 42.50 GBP" in out
    assert "Billing stopped the schedule from 2026-06-20: 4 installments billed" in out
    assert "Outbox rows written in the same transactions as the changes: 10" in out
