"""A worker for the tests of ``benchmarks._processes``: prints back each line it reads."""

from __future__ import annotations

import sys

for line in sys.stdin:
    print(line.strip(), flush=True)
