"""Run every Python code block of the documentation under pytest (Sybil).

Pages whose samples talk to a broker skip them with ``% skip: start if(not rabbitmq, ...)``
when the server is not reachable; under ``CI=true`` they always run, so a missing server
fails instead of skipping, as the rest of the suite does.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser


def _reachable(port: int) -> bool:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return True
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _setup(namespace: dict[str, Any]) -> None:
    namespace["rabbitmq"] = _reachable(5672)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    excludes=["changelog.md"],
    setup=_setup,
).pytest()
