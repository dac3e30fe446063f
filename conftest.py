"""Run the Python code blocks of README.md under pytest (Sybil), as the docs' are.

Under nox (``TACTICAL_TEST_INSTALLED=1``) the suite must test the installed wheel: a run that
imports tactical from anywhere but the environment's site-packages (``src`` on ``PYTHONPATH``,
say) stops before any test.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

# No wall-clock limits on Hypothesis examples: the suite runs in several xdist workers on
# shared cores, where an example's first run can take ten times its usual time (the project
# never asserts on timing). On top of the active profile: CI's keeps its derandomized runs.
settings.register_profile(
    "tactical",
    settings(),
    deadline=None,
    suppress_health_check=list(
        dict.fromkeys([*settings().suppress_health_check, HealthCheck.too_slow])
    ),
)
settings.load_profile("tactical")

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md"],
).pytest()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked ``slow`` first, each part in its order.

    They are the suite's longest (processes, SIGKILLs, brokers). pytest-xdist's loadscope
    hands scopes out in this order when told ``--no-loadscope-reorder`` (the tests session
    that runs them does): started first, they overlap the rest, where by default (largest
    scope first) the chaos test's two came last and ran alone while the other workers idled.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure() -> None:
    """Refuse to run the suite on a checkout's tactical when the installed one is required."""
    if not os.environ.get("TACTICAL_TEST_INSTALLED"):
        return
    # Imported here, not at the top: coverage has started by now.
    import tactical

    location = Path(tactical.__file__).resolve().parent
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    if not location.is_relative_to(site_packages):
        raise pytest.UsageError(
            f"TACTICAL_TEST_INSTALLED is set, but tactical was imported from {location}, "
            f"not from {site_packages}: remove the checkout from PYTHONPATH"
        )
