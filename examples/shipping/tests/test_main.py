"""``python -m examples.shipping`` runs its narrated scenario to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


class TestNarratedScenario:
    """The demo program, run as a user would."""

    def test_the_scenario_runs_and_narrates_the_refused_commands(self) -> None:
        """Exit status 0, nothing on stderr, and the refusals are told with their messages."""
        result = subprocess.run(
            [sys.executable, "-m", "examples.shipping"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert "REFUSED cancel: InvariantViolation: Shipment 17612345675 cannot be cancelled" in out
        assert "REFUSED take 2 labels from the stock: InsufficientLabelStock" in out
        assert "label stock of PARCEL-POST: 3 -> 1" in out
        assert "17612345675 is DELIVERED" in out
        assert "17612345690 is LABEL_PRINTED" in out
        assert "no mapping code" in out
