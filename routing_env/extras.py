"""The optional dependencies (``pyproject.toml``'s extras) and the error a missing one raises.

Optional libraries are imported where they are used; when one is missing, the error
names the extra that installs it (``pip install 'routing-env[parquet]'``), not the bare
package, so that the version bounds of the extra apply.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "import_extra", "install_command", "missing_extra"]


class MissingExtraError(ImportError):
    """An optional library is not installed; the message names the extra that installs it."""


def install_command(extra: str) -> str:
    """The pip command that installs routing-env with ``extra`` (e.g. ``"plots"``)."""
    return f"pip install 'routing-env[{extra}]'"


def missing_extra(*, feature: str, extra: str, package: str, instead: str | None = None) -> MissingExtraError:
    """The error to raise when ``feature`` needs ``package``, installed by the extra ``extra``.

    Raise it ``from`` the original ``ImportError``.

    Args:
        feature: What needs the library (e.g. ``"routing_env.integrations.tianshou"`` or
            ``"writing Parquet"``).
        extra: The routing-env extra that installs it (e.g. ``"tianshou"``).
        package: The missing distribution (e.g. ``"tianshou>=2,<3"``).
        instead: What works without it, if anything (e.g. ``"export to a .csv path"``).
    """
    alternative = f" (or {instead})" if instead else ""
    return MissingExtraError(
        f"{feature} needs {package}, which is not installed; "
        f"install the extra with: {install_command(extra)}{alternative}"
    )


def import_extra(
    module: str, *, feature: str, extra: str, package: str, instead: str | None = None
) -> ModuleType:
    """``module`` imported (as ``import module`` would), or :func:`missing_extra`'s error when it is not installed.

    Example: ``pq = import_extra("pyarrow.parquet", feature="writing Parquet", extra="parquet",
    package="pyarrow")``.

    Raises:
        ImportError: Naming ``feature``, ``package`` and the pip command of ``extra``
            (chained to the original error).
    """
    try:
        # each parent package first, as an import statement does (so a parent that is
        # missing is noticed even when the submodule is already loaded)
        parts = module.split(".")
        for i in range(1, len(parts)):
            importlib.import_module(".".join(parts[:i]))
        return importlib.import_module(module)
    except ImportError as err:
        raise missing_extra(feature=feature, extra=extra, package=package, instead=instead) from err
