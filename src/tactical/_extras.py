"""Say which extra to install when an optional integration's dependency is missing."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(error: ModuleNotFoundError, feature: str, extra: str) -> ModuleNotFoundError:
    """The error to raise when importing ``feature`` failed with ``error``.

    Names the missing module and the ``pip install`` command of the extra that brings it;
    keeps the missing module's ``name``, as Python's own error does. Usage, around the
    optional dependency's import::

        try:
            import sqlalchemy
        except ModuleNotFoundError as error:
            raise missing_extra(error, "tactical.sqlalchemy", "sql") from error
    """
    return ModuleNotFoundError(
        f"{feature} needs {error.name}, which is not installed: pip install 'tactical[{extra}]'",
        name=error.name,
    )
