"""The public surface: the sync and aio twins agree, and the docs show only public names."""

from __future__ import annotations

import inspect
import pathlib
import re
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: the one renaming between the sides: what closes is ``close`` on sync, ``aclose`` on aio (as httpx)
RENAMED = {"close": "aclose"}


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """A callable's parameters as a caller sees them: names, kinds and defaults (types differ:
    a handler is ``async def`` on one side)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_both_sides_export_the_same_names() -> None:
    assert sorted(RENAMED.get(n, n) for n in svclink.sync.__all__) == sorted(svclink.aio.__all__)


@pytest.mark.parametrize("name", svclink.sync.__all__)
def test_every_public_twin_has_the_same_signature(name: str) -> None:
    sync_obj = getattr(svclink.sync, name)
    aio_obj = getattr(svclink.aio, RENAMED.get(name, name))
    if not inspect.isclass(sync_obj):
        assert _shape(sync_obj) == _shape(aio_obj)
        return
    assert _shape(sync_obj) == _shape(aio_obj), f"{name}(...)"
    sync_names, aio_names = _public(sync_obj), _public(aio_obj)
    for member in sync_names:
        twin = RENAMED.get(member, member)
        assert twin in aio_names, f"svclink.aio.{name} has no {twin} (the twin of sync {member})"
        left, right = getattr(sync_obj, member), getattr(aio_obj, twin)
        if callable(left):
            assert _shape(left) == _shape(right), f"{name}.{member}"
    for member in aio_names - sync_names:
        # an aio-only name is only the renamed one, or an alias of it kept for old code
        assert member in RENAMED.values(), f"svclink.aio.{name}.{member} has no sync twin"
    for member in sync_names & aio_names & set(RENAMED):
        assert getattr(aio_obj, member) is getattr(aio_obj, RENAMED[member]), f"aio {name}.{member}"
    if hasattr(sync_obj, "__enter__"):
        assert hasattr(aio_obj, "__aenter__"), f"svclink.aio.{name} is no async context manager"


def test_the_docs_import_only_the_public_surface() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
    found = [f"{p.name}:{n}" for p in pages for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"svclink\.core\b", line)]  # fmt: skip
    assert found == []


def test_the_readme_names_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.rst") if p.name != "index.rst")
    assert [p for p in pages if f"(docs/{p})" not in readme] == []
