"""Other services as real processes: an ASGI app under uvicorn, a Celery worker.

Each runs in its own process with its own ``SVCLINK_*`` environment, so it has its own
service name and settings, as it would in production. Both are started on 127.0.0.1,
waited for until they say they are ready, and stopped (their whole process group) after.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without SVCLINK_* or Django variables, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCLINK_", "DJANGO_"))}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Process:
    """A subprocess whose merged output is kept (for the failure message) and watched for a line."""

    def __init__(self, argv: list[str], env: Mapping[str, str], ready: str, timeout: float = 30) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: stop() ends its children too
        )
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self.match = self.wait_for(ready, timeout)
        except BaseException:
            self.stop()
            raise

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip())
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; fails with the output so far."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._seen:
            while True:
                for line in self.lines[checked:]:
                    found = regex.search(line)
                    if found:
                        return found
                checked = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and checked == len(self.lines)):
                    output = "\n".join(self.lines[-60:])
                    raise RuntimeError(f"{pattern!r} not seen (exit {self.proc.poll()}):\n{output}")
                self._seen.wait(min(left, 0.2))

    def output(self) -> str:
        with self._seen:
            return "\n".join(self.lines)

    def stop(self, grace: float = 15) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # prefork children left behind by a hard stop
            os.killpg(self.proc.pid, signal.SIGKILL)


class Uvicorn(Process):
    """``uvicorn <app>`` on 127.0.0.1 and a free port; ``url`` is its base URL."""

    def __init__(self, app: str, env: Mapping[str, str], lifespan: str = "on") -> None:
        argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0"]
        argv += ["--no-access-log", "--log-level", "info", "--lifespan", lifespan]
        super().__init__(argv, env, r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
        self.url = self.match.group(1)


class CeleryWorker(Process):
    """A Celery worker (prefork pool, 2 processes) of ``app`` consuming ``queue`` only."""

    def __init__(self, app: str, queue: str, env: Mapping[str, str]) -> None:
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--pool=prefork", "--concurrency=2"]
        argv += ["-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]
        argv += ["--without-heartbeat", "--loglevel=INFO"]
        super().__init__(argv, env, r"@\S+ ready\.", timeout=60)
