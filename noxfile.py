"""Development sessions: ``nox`` builds the package, tests it on every supported Python, type-checks,
lints and builds the docs; see README for the rest.

Every session that imports tactical installs the wheel built from this checkout's sdist (once per
nox run), never the checkout itself, so what is tested is what is shipped.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "package", "tests", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.11", "3.12", "3.13"]
# Coverage is measured on one Python: the code has no version-specific branches, and tracing
# makes the suite slower.
COVERAGE_PYTHON = "3.11"
EXTRAS = "sql,postgres,async,asyncpg,rabbitmq,redis,testing,otel"
ROOT = Path(__file__).parent
DIST = ROOT / "build" / "nox-dist"
# Tells the root conftest.py that tactical must be imported from the session's site-packages.
INSTALLED = {"TACTICAL_TEST_INSTALLED": "1"}
# The suite mostly waits on PostgreSQL, RabbitMQ, Redis and SQLite files, so pytest-xdist
# workers overlap those waits: WORKERS_PER_CORE per core, at most MAX_WORKERS (each worker has a
# PostgreSQL database of its own, tests/postgres.py). loadscope sends a test class, or a module's
# functions, to one worker, in order (a docs page's samples, which share one namespace, are one
# test: docs/conftest.py). `-- -n 0` after the session runs serially.
WORKERS_PER_CORE = 2
MAX_WORKERS = 4
TEST_WORKERS = [
    "-n",
    str(min(MAX_WORKERS, WORKERS_PER_CORE * (os.cpu_count() or 1))),
    "--dist",
    "loadscope",
]


def _link_pyenv_pythons(versions: list[str]) -> None:
    """Make pyenv's installed interpreters of ``versions`` findable as ``pythonX.Y``.

    pyenv's shims answer only for the selected versions (``pyenv global``): with 3.12 installed
    but not selected, ``python3.12`` fails with "command not found" and nox finds no
    interpreter. Links to the installed interpreters (the highest patch of each version), put
    first on ``PATH``, let nox find them without changing which Python ``python3`` is.
    """
    installed = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if not installed.is_dir():
        return
    links = ROOT / ".nox" / "pythons"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir(parents=True)
    for version in versions:
        patches = [
            (int(match[1]), path / "bin" / f"python{version}")
            for path in installed.iterdir()
            if (match := re.fullmatch(re.escape(version) + r"\.(\d+)", path.name))
        ]
        executables = [(patch, exe) for patch, exe in patches if exe.is_file()]
        if executables:
            (links / f"python{version}").symlink_to(max(executables)[1])
    os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


_link_pyenv_pythons(PYTHONS)


def _groups(*names: str) -> list[str]:
    requirements: list[str] = []
    for name in names:
        requirements += nox.project.dependency_groups(PYPROJECT, name)
    return requirements


@dataclass(frozen=True)
class _Dist:
    sdist: Path
    wheel: Path


_built: list[_Dist] = []


def _dist(session: nox.Session) -> _Dist:
    """The sdist and the wheel built from it, built once per nox run into ``build/nox-dist``."""
    if _built:
        return _built[0]
    shutil.rmtree(DIST, ignore_errors=True)
    # Both front ends build the sdist first, then the wheel from the unpacked sdist: a file
    # the sdist forgets is missing from the wheel too.
    if session.venv_backend == "uv":
        session.run("uv", "build", "--out-dir", str(DIST), str(ROOT))
    else:
        session.install("build")
        session.run("python", "-m", "build", "--outdir", str(DIST), str(ROOT))
    (sdist,) = DIST.glob("*.tar.gz")
    (wheel,) = DIST.glob("*.whl")
    _built.append(_Dist(sdist, wheel))
    return _built[0]


def _install(session: nox.Session, *requirements: str, extras: str = EXTRAS) -> None:
    """Install the wheel (not the checkout) with ``extras``, and ``requirements``."""
    wheel = _dist(session).wheel
    session.install(f"{wheel}[{extras}]", *requirements)
    # A reused venv may hold an earlier build of the same version, which pip would keep.
    session.install("--no-deps", "--force-reinstall", str(wheel))


@nox.session(python=PYTHONS, download_python="never")
def tests(session: nox.Session) -> None:
    """Run the test suite on the installed wheel: all of it on 3.11, all but ``slow`` on 3.12, 3.13.

    The servers are on loopback (under CI=true none may be missing); coverage on 3.11 only.
    Arguments after ``--`` with a ``-m`` of their own choose the tests on every Python.

    The ``slow`` tests start, SIGKILL and replace OS processes, inject crashes or push 10,000
    events through the brokers: they prove what happens between processes, databases and
    brokers, which does not depend on the Python version, so one run per CI (on 3.11) proves
    it. They are 17 tests of over 3,300 but about two fifths of the summed test time.
    """
    _install(session, *_groups("tests"))
    full = session.python == COVERAGE_PYTHON
    coverage = ["--cov", "--cov-report=term"] if full else []
    chosen = any(arg.startswith("-m") for arg in session.posargs)  # -m EXPR or -mEXPR
    markers = [] if full or chosen else ["-m", "not slow"]
    # With the slow tests, hand scopes out in collection order, where conftest.py put the
    # slow ones first (by default loadscope starts the scopes with the most tests first).
    order = ["--no-loadscope-reorder"] if full else []
    env = dict(INSTALLED)
    if "PYTHONHASHSEED" not in os.environ:
        env["PYTHONHASHSEED"] = "0"
    session.run("pytest", *TEST_WORKERS, *order, *coverage, *markers, *session.posargs, env=env)


# The files the sdist must hold to build, test and document the project by itself.
SDIST_REQUIRED = [
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "PKG-INFO",
    "conftest.py",
    "noxfile.py",
    "src/tactical/__init__.py",
    "src/tactical/py.typed",
    "tests/conftest.py",
    "examples/__init__.py",
    "examples/insurance/__main__.py",
    "examples/shipping/__main__.py",
    "docs/conf.py",
    "docs/index.md",
    "benchmarks/__main__.py",
]
SDIST_JUNK = re.compile(r"(^|/)(__pycache__|\.nox|\.venv|_build|results|dist|build)(/|$)|\.pyc$")
# A quick part of the suite, run in the unpacked sdist: the metadata, a module of each kind,
# an example and the docs' tutorial, so that collection and the conftests are exercised.
SDIST_TESTS = [
    "tests/test_distribution.py",
    "tests/test_extras.py",
    "tests/test_model.py",
    "examples/shipping",
    "docs/tutorial",
    "README.md",
]


@nox.session(python=COVERAGE_PYTHON, download_python="never")
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them, and run part of the suite from the sdist.

    ``twine check --strict`` on both; the wheel holds only ``tactical/`` (with ``py.typed``)
    and its metadata; the sdist holds what its tests, docs and nox sessions need and no build
    junk, and its whole test suite collects when unpacked.
    """
    dist = _dist(session)
    session.install("twine")
    session.run("twine", "check", "--strict", str(dist.sdist), str(dist.wheel))

    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
    info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    strays = [name for name in names if name.split("/")[0] not in {"tactical", info}]
    if strays:
        session.error(f"the wheel holds files outside tactical/: {strays}")
    if "tactical/py.typed" not in names:
        session.error("the wheel has no tactical/py.typed")

    with tarfile.open(dist.sdist) as sdist:
        members = [member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()]
        missing = sorted(set(SDIST_REQUIRED) - set(members))
        junk = [name for name in members if SDIST_JUNK.search(name)]
        if missing or junk:
            session.error(f"the sdist misses {missing} and holds {junk}")
        unpacked = Path(tempfile.mkdtemp(prefix="tactical-sdist-"))
        sdist.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()

    try:
        _install(session, *_groups("tests"))
        with session.chdir(source):
            session.run(
                "pytest",
                "-p",
                "no:cacheprovider",
                "--collect-only",
                "-q",
                env=INSTALLED,
                silent=True,
            )
            session.run("pytest", "-p", "no:cacheprovider", *SDIST_TESTS, env=INSTALLED)
    finally:
        shutil.rmtree(unpacked)


@nox.session(python=COVERAGE_PYTHON, download_python="never")
def typecheck(session: nox.Session) -> None:
    """Type-check the library, the examples, tests/typing and the docs' pytest plugin
    (docs/conftest.py, docs/typecheck_samples.py) with mypy --strict and pyright strict.

    Then ``pyright --verifytypes``: every public name of the installed package has a declared
    type, so users' checkers cannot infer it differently (it fails below 100%). Last, the
    Python samples of the docs and README, written out by ``docs/typecheck_samples.py``.
    """
    _install(session, *_groups("typing"))
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


@nox.session(python=COVERAGE_PYTHON, download_python="never")
def docs(session: nox.Session) -> None:
    """Run every code sample of the docs and README (Sybil) against the installed wheel, then
    build with warnings as errors."""
    _install(session, *_groups("docs", "tests"))
    session.run("pytest", "-p", "no:cacheprovider", "docs", "README.md", env=INSTALLED)
    session.run(
        "sphinx-build", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: ratios against baselines timed in the same run, with their goals.

    Every row prints with its goal and whether the run met it, then the whole table as the
    performance page shows it. ``nox -s bench -- sql eventsourcing`` runs only the groups
    named (``python -m benchmarks --help`` lists them). PostgreSQL rows use
    ``TACTICAL_BENCH_POSTGRES_URL`` (default: the ``test`` database on 127.0.0.1) and are
    skipped, with the reason, when it does not answer. The peer library compared against and
    uvloop (the async rows run on it too) are installed here only, never as dependencies of
    tactical.
    """
    # uvloop: the event loop of production ASGI servers, for the async rows run on it.
    _install(session, "eventsourcing[postgres]>=9.4,<10", "uvloop")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=COVERAGE_PYTHON, download_python="never")
def chaos(session: nox.Session) -> None:
    """Run the pipeline's SIGKILL test (tests/outbox/test_pipeline_chaos.py) for a full minute.

    Four partitioned relays and four consumers, as processes, on RabbitMQ and on Redis, random
    ones killed while writers commit; the suite runs it for 12 s. ``TACTICAL_CHAOS_SECONDS``
    sets another length, ``TACTICAL_CHAOS_SEED`` replays a run's choices; it prints, for each
    broker, the events, kills, takeovers and the time to drain.
    """
    _install(session, *_groups("tests"))
    env = {**INSTALLED, "TACTICAL_CHAOS_SECONDS": os.environ.get("TACTICAL_CHAOS_SECONDS", "60")}
    test = "tests/outbox/test_pipeline_chaos.py"
    session.run("pytest", "-n", "0", "-s", test, *session.posargs, env=env)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the example bounded contexts' narrated scenarios (also ``nox -s examples``)."""
    _install(session)
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
