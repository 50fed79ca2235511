"""Sphinx configuration for the svclink documentation.

Built with ``sphinx-build -W -b html docs <out>``: every warning is an error. No
extension that needs the network (no intersphinx); the default alabaster theme.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from svclink import __version__

project = "svclink"
author = "svclink contributors"
copyright = "svclink contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc"]

# Type hints go into the parameter descriptions; an annotation that names a type
# Sphinx cannot link (Mapping[str, Any], httpx types, ...) stays plain text.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "service-to-service HTTP and events", "fixed_sidebar": True}
html_title = f"svclink {release}"


def _status_docstrings(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """A docstring that is only a status ("404.") would be read as an empty numbered list."""
    text = [line for line in lines if line.strip()]
    if len(text) == 1 and text[0].strip().rstrip(".").isdigit():
        lines[:] = [f"Raised for status {text[0].strip().rstrip('.')}.", ""]


def setup(app: object) -> None:
    app.connect("autodoc-process-docstring", _status_docstrings)  # type: ignore[attr-defined]
