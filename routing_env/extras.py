"""The optional dependencies (``pyproject.toml``'s extras) and the error a missing one raises.

Optional libraries are imported where they are used; when one is missing, the error
names the extra that installs it (``pip install 'routing-env[parquet]'``), not the bare
package, so that the version bounds of the extra apply.
"""

from __future__ import annotations

__all__ = ["install_command", "missing_extra"]


def install_command(extra: str) -> str:
    """The pip command that installs routing-env with ``extra`` (e.g. ``"plots"``)."""
    return f"pip install 'routing-env[{extra}]'"


def missing_extra(*, feature: str, extra: str, package: str, instead: str | None = None) -> ImportError:
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
    return ImportError(
        f"{feature} needs {package}, which is not installed; "
        f"install the extra with: {install_command(extra)}{alternative}"
    )
