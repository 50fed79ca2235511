"""Import guards: a side imported without its extra says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the ``pip install`` line that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"svclink.{extra} needs {module!r}, which is not installed: pip install 'svclink[{extra}]'"
        ) from exc
