"""Every code example of README.md and docs/ runs as part of the test suite (with Sybil).

The Python blocks of one page run in order in one namespace, as a reader would paste
them into one session: a later block uses what an earlier one defined. A block may
``await`` at its top level (it runs on the page's own event loop, kept for the whole
page, as in ``python -m asyncio``).

What a page needs around its examples (a service answering on 127.0.0.1:8001, a
function the example calls, a check of what it did) is given by invisible blocks on the
page itself (``.. invisible-code-block: python`` in reST, ``<!-- invisible-code-block:
python -->`` in Markdown), so what runs is what a reader sees, plus what they would have
in their own project. A block captioned with a file name (``myapp/views.py``) is written
to that file of a temporary project (``project``) instead of being run (a second block
with the same caption adds to the file), and ``run_project(project, script)`` runs a
script against that project in a fresh interpreter, as ``manage.py`` or a worker would.

Every page starts with svclink unconfigured, no ``SVCLINK_*`` variables, the in-process
broker empty, and a real HTTP server on 127.0.0.1:8001 (the address the examples use) as
``docs_server``, with no routes: a page's invisible setup gives it the routes its
examples call. Where a page shows each example twice, captioned ``sync`` and ``aio``,
and says that a name (``user``) is the object of the matching side, its setup binds
``side_names = {"sync": {...}, "aio": {...}}`` and each captioned block sees that side's
objects.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser as MarkdownCodeBlockParser
from sybil.parsers.rest import CodeBlockParser as RestCodeBlockParser

import svclink
import svclink.aio
import svclink.sync
import svclink.testing

from .server import Reply, TestServer

DOCS_PORT = 8001
_RUNNER = "__docs_runner__"
#: a caption that names a file (``settings.py``, ``myproject/celery.py``)
_FILE_CAPTION = re.compile(r"[\w./-]+\.py")


def _evaluate(example: Example) -> None:
    """Run one block; a block with a top-level ``await`` runs on the page's event loop."""
    namespace = example.namespace
    caption = (example.region.lexemes.get("options") or {}).get("caption")
    if caption is not None and _FILE_CAPTION.fullmatch(caption):
        _write_project_file(namespace["project"], caption, example.parsed)
        return
    side_names = namespace.get("side_names")  # a page's names that differ by side
    if isinstance(side_names, dict) and caption in side_names:
        namespace.update(side_names[caption])
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile(source, str(example.path), "exec", flags=flags, dont_inherit=True)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        namespace[_RUNNER].run(result)


def _write_project_file(project: Path, name: str, source: str) -> None:
    """A block captioned ``myapp/views.py`` is that file of the reader's project; a second
    block with the same caption adds to it, as a reader adds to their settings.py."""
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(project).parents:
        init = project / parent / "__init__.py"
        if parent != Path(".") and not init.exists():
            init.write_text("")
    before = path.read_text() + "\n" if path.exists() else ""
    path.write_text(before + textwrap.dedent(str(source)))


def _start_docs_server() -> TestServer:
    """The server the examples call; waits briefly if another run holds the port."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return TestServer().start(port=DOCS_PORT)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _setup(namespace: dict[str, Any]) -> None:
    namespace["__name__"] = "docs_example"  # a module name, as the code would have in a project
    namespace["__environ__"] = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("SVCLINK_")]:
        del os.environ[name]
    svclink.configure()
    svclink.testing.reset()
    os.environ.setdefault("SVCLINK_SIGNING_KEY", "docs-example-signing-key-0123456789")
    namespace[_RUNNER] = asyncio.Runner()
    namespace["docs_server"] = _start_docs_server()
    namespace["Reply"] = Reply
    namespace["project"] = Path(tempfile.mkdtemp(prefix="svclink-docs-project-"))
    namespace["run_project"] = _run_project


def _teardown(namespace: dict[str, Any]) -> None:
    runner: asyncio.Runner = namespace[_RUNNER]
    with contextlib.suppress(Exception):
        runner.run(svclink.aio.aclose())
    runner.close()
    namespace["docs_server"].stop()
    shutil.rmtree(namespace["project"], ignore_errors=True)
    svclink.sync.close()
    svclink.testing.reset()
    os.environ.clear()
    os.environ.update(namespace["__environ__"])
    svclink.configure()


def _run_project(project: Path, script: str, **env: str) -> str:
    """Run ``script`` with the reader's project on the path, in a fresh interpreter (as
    ``manage.py`` or a worker would); its standard output, or AssertionError with its errors."""
    root = Path(__file__).resolve().parent.parent
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(root)]), **env}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=project, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def collector() -> Any:
    """The pytest collector for README.md and the reST pages of docs/."""
    root = str(Path(__file__).resolve().parent.parent)
    common: dict[str, Any] = {
        "setup": _setup,
        "teardown": _teardown,
        "path": root,
        "excludes": ["docs/_build/*"],
    }
    rest = Sybil(parsers=[RestCodeBlockParser("python", _evaluate)], patterns=["docs/*.rst"], **common)
    markdown = Sybil(parsers=[MarkdownCodeBlockParser("python", _evaluate)], patterns=["README.md"], **common)
    return (rest + markdown).pytest()
