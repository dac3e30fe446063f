"""Shared fixtures: real servers on loopback, skipped when absent unless CI=true."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_server(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip the calling test if ``name`` does not listen on ``host:port``; under CI, fail."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as error:
        reason = f"{name} is not reachable on {host}:{port} ({error})"
    if IN_CI:
        pytest.fail(f"{reason}; CI=true requires every server", pytrace=False)
    pytest.skip(reason)
