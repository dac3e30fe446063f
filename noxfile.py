"""Development sessions: ``nox`` runs tests, typecheck and lint; see README for the rest."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "typecheck", "lint", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
EXTRAS = ".[sql,postgres,rabbitmq,redis,testing]"
ROOT = Path(__file__).parent


def _groups(*names: str) -> list[str]:
    requirements: list[str] = []
    for name in names:
        requirements += nox.project.dependency_groups(PYPROJECT, name)
    return requirements


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (services on loopback; under CI=true none may be missing)."""
    session.install("-e", EXTRAS, *_groups("tests"))
    session.run(
        "pytest",
        "--cov",
        "--cov-report=term",
        *session.posargs,
        env={"PYTHONHASHSEED": "0"} if "PYTHONHASHSEED" not in os.environ else {},
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the library, the examples and tests/typing with mypy --strict and pyright strict.

    Then ``pyright --verifytypes``: every public name of the installed package has a declared
    type, so users' checkers cannot infer it differently (it fails below 100%). Last, the
    Python samples of the docs and README, written out by ``docs/typecheck_samples.py``.
    """
    session.install("-e", EXTRAS, *_groups("typing"))
    session.run("mypy")
    session.run("pyright")
    session.run("pyright", "--verifytypes", "tactical", "--ignoreexternal")
    # The docs' samples, as a user would copy them: one module per page, same strict settings.
    samples = ROOT / "build" / "doc-samples"
    session.run("python", "docs/typecheck_samples.py", str(samples))
    session.run("mypy", str(samples), env={"MYPYPATH": str(ROOT)})
    session.run("pyright", str(samples))


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff."""
    session.install(*_groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Run every code sample of the docs and README (Sybil), then build with warnings as errors."""
    session.install("-e", EXTRAS, *_groups("docs", "tests"))
    session.run("pytest", "-p", "no:cacheprovider", "docs", "README.md")
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: a table of ratios against baselines measured in the same run.

    ``nox -s bench -- model sql`` runs only the groups named. The peer library compared
    against is installed here only, never as a dependency of tactical.
    """
    session.install("-e", EXTRAS, "eventsourcing>=9.4,<10")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the example bounded contexts' narrated scenarios (also ``nox -s examples``)."""
    session.install("-e", EXTRAS)
    examples = sorted(p.parent.name for p in (ROOT / "examples").glob("*/__main__.py"))
    if not examples:
        session.log("examples not yet available")
        return
    for name in examples:
        session.run("python", "-m", f"examples.{name}")


@nox.session(name="examples")
def examples_session(session: nox.Session) -> None:
    """The same as ``demo``: run the example bounded contexts' narrated scenarios."""
    demo(session)
