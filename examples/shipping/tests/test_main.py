"""``python -m examples.shipping`` runs its narrated scenario to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def run_python(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter from the project root, with this test's import path.

    That path has the tactical the tests import (the installed one, or ``src``) and the root.
    """
    return subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, *arguments],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestLayers:
    """The domain and application layers import no infrastructure."""

    def test_domain_and_services_import_no_sql(self) -> None:
        """Importing every module but the adapters loads neither SQLAlchemy nor a driver."""
        modules = [
            "ids",
            "events",
            "ports",
            "domain",
            "inventory",
            "commands",
            "services",
            "handlers",
        ]
        imports = "; ".join(f"import examples.shipping.{m}" for m in modules)
        check = "import json, sys; print(json.dumps(sorted(sys.modules)))"
        result = run_python("-c", f"{imports}; {check}")
        assert result.returncode == 0, result.stderr
        loaded: set[str] = set(json.loads(result.stdout))
        assert not any(name.startswith(("sqlalchemy", "psycopg", "sqlite3")) for name in loaded)
        assert not any(name.startswith("tactical.sqlalchemy") for name in loaded)
        assert "tactical" in loaded


@pytest.fixture(scope="module")
def narration() -> str:
    """What ``python -m examples.shipping`` printed; run once, checked to have succeeded."""
    result = run_python("-m", "examples.shipping")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


class TestNarratedScenario:
    """The demo program, run as a user would: exit status 0, nothing on stderr."""

    def test_the_scenario_narrates_the_refused_commands(self, narration: str) -> None:
        """The refusals are told with their messages, and the label stock running out."""
        out = narration
        assert "REFUSED cancel: InvariantViolation: Shipment 17612345675 cannot be cancelled" in out
        assert "REFUSED take 2 labels from the stock: InsufficientLabelStock" in out
        assert "label stock of PARCEL-POST: 3 -> 1" in out
        assert "17612345675 is DELIVERED" in out
        assert "17612345690 is LABEL_PRINTED" in out
        assert "no mapping code" in out

    def test_the_scenario_narrates_the_pickup_deadline(self, narration: str) -> None:
        """Scheduled with the label, cancelled by the pickup, fired once past the window."""
        out = narration
        assert "command DecrementLabelStock" in out
        assert "timer  pickup-deadline:17612345675, due 2026-07-06 14:01 UTC" in out
        assert "timer  none scheduled" in out
        assert "event  PickupDeadlinePassed(shipment_id=17612345690" in out
        assert "reason=no pickup scan by the end of the pickup window" in out
        assert "1 timer fired: shipment 17612345690 is EXCEPTION." in out
        assert "A second round fires nothing: 0 timers." in out

    def test_the_narration_is_the_same_on_every_run(self, narration: str) -> None:
        """Ids, times and log lines come from the scenario, not from chance: two runs differ
        only in the temporary directory's name."""
        again = run_python("-m", "examples.shipping")
        assert again.returncode == 0, again.stderr
        first, *rest = narration.splitlines()
        second, *rest_again = again.stdout.splitlines()
        assert first.startswith("Shipping and inventory contexts on SQLite at ")
        assert second.startswith("Shipping and inventory contexts on SQLite at ")
        assert rest == rest_again
        failure = "log    tactical.bus: event handler failed: in handler LabelStockKeeper"
        assert failure in again.stdout
