"""A missing optional dependency is reported with the extra that installs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The fresh interpreter imports the tactical this test does: installed (nox), or src.
IMPORT_PATH = os.pathsep.join(sys.path)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports the tactical this test does."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": IMPORT_PATH},
        timeout=60,
    )


def import_without(module: str, missing: str) -> subprocess.CompletedProcess[str]:
    """Import ``module`` in a fresh interpreter where ``missing`` cannot be imported."""
    # A None entry in sys.modules makes `import missing` raise ModuleNotFoundError, as an
    # uninstalled package does.
    return run_python(f"import sys; sys.modules[{missing!r}] = None; import {module}")


class TestMissingExtras:
    @pytest.mark.parametrize(
        ("module", "missing", "extra"),
        [
            ("tactical.sqlalchemy", "sqlalchemy", "sql"),
            ("tactical.outbox", "sqlalchemy", "sql"),
            ("tactical.testing", "pytest", "testing"),
            ("tactical.testing", "hypothesis", "testing"),
            ("tactical.outbox.rabbitmq", "pika", "rabbitmq"),
            ("tactical.outbox.redis_streams", "redis", "redis"),
        ],
    )
    def test_the_error_names_the_extra_to_install(
        self, module: str, missing: str, extra: str
    ) -> None:
        """Importing an integration without its dependency says which extra brings it."""
        result = import_without(module, missing)
        assert result.returncode == 1
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line == (
            f"ModuleNotFoundError: {module} needs {missing}, which is not installed: "
            f"pip install 'tactical[{extra}]'"
        )

    def test_the_core_needs_no_extra(self) -> None:
        """`import tactical` works with SQLAlchemy, pytest and Hypothesis all missing."""
        code = (
            "import sys\n"
            "for name in ('sqlalchemy', 'pytest', 'hypothesis', 'pika', 'redis'):\n"
            "    sys.modules[name] = None\n"
            "import tactical\n"
            "print(len(tactical.__all__))\n"
        )
        result = run_python(code)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) > 0

    def test_the_sql_extra_needs_no_greenlet(self) -> None:
        """With `sql` alone (no greenlet, which SQLAlchemy 2.1's asyncio layer needs), the SQL
        unit of work, the outbox and the projections import, and a commit is stored."""
        code = (
            "import sys\n"
            "sys.modules['greenlet'] = None\n"
            "import sqlalchemy as sa\n"
            "import tactical.outbox, tactical.projections\n"
            "from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema\n"
            "from tactical import AggregateRoot, JsonCodec\n"
            "class Account(AggregateRoot[str]):\n"
            "    balance: int = 0\n"
            "codec = JsonCodec()\n"
            "codec.register(Account, name='bank.Account')\n"
            "engine = sa.create_engine('sqlite://')\n"
            "create_schema(engine)\n"
            "with SqlAlchemyUnitOfWork(engine, codec=codec) as uow:\n"
            "    uow.repository(Account).add(Account('A-1'))\n"
            "    uow.commit()\n"
            "with SqlAlchemyUnitOfWork(engine, codec=codec) as uow:\n"
            "    print(uow.repository(Account).require('A-1').version)\n"
            "print('sqlalchemy.ext.asyncio' in sys.modules)\n"
        )
        result = run_python(code)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["1", "False"]
