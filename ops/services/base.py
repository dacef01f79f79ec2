"""What every local service launcher shares: a data directory, a port, a pid file, readiness.

A service runs detached (its own session), writes its pid and port into
``<data_dir>/services/<name>/state.json``, and is stopped by pid. Launchers
bind to 127.0.0.1 only: these are development and test servers.
"""

from __future__ import annotations

import abc
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from indexer.errors import SludgeError


class ServiceError(SludgeError):
    """A local service could not be installed, started, checked or stopped."""


@dataclass
class ServiceState:
    name: str
    pid: int
    port: int
    url: str
    data_dir: str
    log_file: str
    started_at: float


def parent_death_signal() -> None:
    """In a child before exec: SIGTERM when the parent goes (Linux PR_SET_PDEATHSIG; elsewhere a no-op).

    "The parent" is the *thread* that forked the child: start such a child from a thread that
    lives as long as the child should (the main thread), or it dies when that thread ends.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def group_alive(pgid: int) -> bool:
    """Is any process of group ``pgid`` alive (zombies awaiting their parent do not count)?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pgid: int, timeout_s: float = 30.0) -> None:
    """Stop process group ``pgid`` (a launcher and the server it forks): SIGTERM, then SIGKILL after
    ``timeout_s``; the leader is reaped when it is this process's child."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (pid_alive(pgid) or group_alive(pgid)):
        time.sleep(0.1)
    if pid_alive(pgid) or group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:  # reap it when it is our own child (a fixture in this process)
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass


class Service(abc.ABC):
    """One local server. Subclasses implement install/launch/ready checks."""

    name: str
    default_port: int

    def __init__(self, root: Path) -> None:
        """``root``: the services folder (e.g. $SLUDGE_DATA_DIR/services).

        Made absolute here, once: a server runs with its own folder as working
        directory, so a relative path handed to it (``.data/…`` from the default
        data directory) would point somewhere else and the server could not open
        its own log.
        """
        self.dir = Path(os.path.abspath(root / self.name))
        self.state_file = self.dir / "state.json"

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def launch(self, port: int) -> int:
        """Start the server detached on 127.0.0.1:port; return its pid."""

    @abc.abstractmethod
    def ready(self, port: int) -> bool:
        """Whether the server answers and is usable."""

    @abc.abstractmethod
    def url(self, port: int) -> str: ...

    startup_timeout_s: float = 60.0

    # -- shared ---------------------------------------------------------------------
    def state(self) -> ServiceState | None:
        try:
            return ServiceState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def running(self) -> ServiceState | None:
        st = self.state()
        return st if st is not None and pid_alive(st.pid) else None

    def start(self, port: int | None = None) -> ServiceState:
        current = self.running()
        if current is not None:
            if port is None or port == current.port:
                return current
            raise ServiceError(f"{self.name} already runs on port {current.port} (pid {current.pid}); stop it first")
        port = port or self.default_port
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = self.launch(port)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise ServiceError(f"{self.name} exited during start-up; see {self.log_file}")
            if self.ready(port):
                st = ServiceState(self.name, pid, port, self.url(port), str(self.dir), str(self.log_file),
                                  time.time())
                self.state_file.write_text(json.dumps(asdict(st)))
                return st
            time.sleep(0.2)
        self._kill(pid)
        raise ServiceError(f"{self.name} did not become ready within {self.startup_timeout_s:.0f} s; "
                           f"see {self.log_file}")

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server if it runs; True when one was stopped."""
        st = self.running()
        if st is None:
            self.state_file.unlink(missing_ok=True)
            return False
        self._kill(st.pid, timeout_s)
        self.state_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _kill(pid: int, timeout_s: float = 30.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        try:  # reap it when this process started it, so no zombie is left behind
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"
