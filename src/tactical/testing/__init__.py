"""What users import to test their own domain with tactical.

.. versionadded:: 0.1.0
"""

import pytest

# Users run these suites under pytest: give their assertions pytest's detailed messages.
pytest.register_assert_rewrite("tactical.testing._contract")

from tactical.testing._contract import UnitOfWorkContract, UnitOfWorkFactory  # noqa: E402

__all__ = ["UnitOfWorkContract", "UnitOfWorkFactory"]
