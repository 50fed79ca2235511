"""A private RabbitMQ node for tests that stop, kill, pause or reconfigure a broker.

The shared broker on 127.0.0.1:5672 is never restarted by a test; a test that needs a
broker fault starts its own node with :func:`private_node` on free ports, with its own
data directory under a temporary folder, and the node is stopped after the test. Extra
``rabbitmq.conf`` lines (a TLS listener, say) and plugins can be given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs

START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@attrs.define
class RabbitNode:
    """A running private node: its AMQP port, its name, and ways to cause faults to it."""

    name: str
    port: int
    dist_port: int
    base: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE ARGS`` against this node."""
        return subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> None:
        """Start the node and wait until it accepts AMQP connections.

        Each start takes a fresh distribution port: after a stop or a kill, the old one can
        stay taken for a while (``dist_port_already_used``); a start that fails on a port
        still in use is tried again, up to three times.
        """
        deadline = time.monotonic() + START_TIMEOUT
        for attempt in range(3):
            self.dist_port = free_port()
            self.env["RABBITMQ_DIST_PORT"] = str(self.dist_port)
            log = open(self.base / "server.out", "ab")  # noqa: SIM115 - closed with the process
            self.process = subprocess.Popen(
                ["rabbitmq-server"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self.log_tail()
                    if attempt < 2 and ("already_used" in tail or "eaddrinuse" in tail):
                        time.sleep(1.0)
                        break
                    raise RuntimeError(f"private RabbitMQ node exited: {tail}")
                if _answers(self.port) and self.ctl("await_startup", timeout=15).returncode == 0:
                    return
                time.sleep(0.3)
            else:
                break
        raise RuntimeError(f"private RabbitMQ node did not start in {START_TIMEOUT}s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the node (gracefully, then by force) and wait for it to be gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("stop", timeout=30)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """``kill -9`` the whole node (the Erlang VM and its helpers)."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): it keeps its sockets open but answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        """Send ``signum`` to the node's every process: the server script runs the Erlang VM
        as the rabbitmq user in a session of its own, out of reach of the script's group."""
        assert self.process is not None
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in [*sorted(self.base.rglob("*.log")), self.base / "server.out"]:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from ``/proc`` (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def make_node(
    config: Sequence[str] = (),
    plugins: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    advanced: str = "",
) -> RabbitNode:
    """A node (not yet started) on free ports, with ``config`` lines in its rabbitmq.conf and
    ``advanced`` (Erlang terms, for what rabbitmq.conf cannot set) in its advanced.config.

    ``files`` (certificates, say) are written into the node's own directory, which the
    rabbitmq user can read; ``{base}`` in a config line stands for that directory.
    """
    base = Path(tempfile.mkdtemp(prefix="svclink-rabbit-"))
    base.chmod(0o777)  # run as root, rabbitmq-server drops to the rabbitmq user
    for file_name, content in (files or {}).items():
        (base / file_name).write_bytes(content)
        (base / file_name).chmod(0o644)
    port, dist_port = free_port(), free_port()
    name = f"svclinktest{uuid.uuid4().hex[:8]}@localhost"
    conf = base / "rabbitmq.conf"
    lines = ["loopback_users = none", f"listeners.tcp.default = {port}", *config]
    conf.write_text("\n".join(line.replace("{base}", str(base)) for line in lines) + "\n")
    (base / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
    (base / "advanced.config").write_text(f"[{advanced}].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "node.pid"),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(base / "feature_flags"),
        "RABBITMQ_QUORUM_DIR": str(base / "quorum"),
        "RABBITMQ_STREAM_DIR": str(base / "stream"),
        "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
    }
    return RabbitNode(name=name, port=port, dist_port=dist_port, base=base, env=env)


@contextlib.contextmanager
def private_node(
    config: Sequence[str] = (),
    plugins: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    advanced: str = "",
) -> Iterator[RabbitNode]:
    """A started private node, stopped and removed after the block (see :func:`make_node`)."""
    node = make_node(config, plugins, files, advanced)
    try:
        node.start()
        yield node
    finally:
        try:
            if node.process is not None and node.process.poll() is None:
                node.resume()
            node.stop()
        finally:
            node.kill()
            shutil.rmtree(node.base, ignore_errors=True)
