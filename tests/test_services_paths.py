"""The service launchers with the default, relative data directory, started from another folder.

Every other test hands the launchers an absolute temporary folder, which hid
that a server started with its own folder as working directory could not open
a log given relative to the caller's (``.data/services/redis/redis.log``). Here
``sludge services start`` runs in a fresh folder with no ``SLUDGE_DATA_DIR``,
then the server is used and stopped, and its files are where the state says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ops.services.base import free_port

SLUDGE = str(Path(sys.executable).parent / "sludge")
pytestmark = pytest.mark.slow


@pytest.fixture
def elsewhere():
    """A fresh working folder (traversable by the unprivileged user Elasticsearch runs as) and a clean env."""
    d = Path(tempfile.mkdtemp(prefix="sludge-relative-"))
    d.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
    yield d, env
    for name in ("es", "redis"):
        subprocess.run([SLUDGE, "services", "stop", name], cwd=d, env=env, capture_output=True, timeout=120)


def sludge(cwd: Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SLUDGE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["redis", "es"])
def test_start_use_stop_with_the_default_relative_data_dir(elsewhere, name):
    cwd, env = elsewhere
    port = free_port()
    r = sludge(cwd, env, "services", "start", name, "--port", str(port))
    assert r.returncode == 0, r.stdout + r.stderr
    url = r.stdout.strip().splitlines()[-1]
    st = json.loads(sludge(cwd, env, "services", "status", name, "--json").stdout)
    assert st["running"] and Path(st["data_dir"]).is_absolute()
    assert Path(st["data_dir"]) == (cwd / ".data" / "services" / name).resolve()
    assert Path(st["log_file"]).is_file() and Path(st["log_file"]).stat().st_size > 0
    if name == "redis":
        import redis

        with redis.Redis.from_url(url) as client:
            client.set("relative", "yes")
            assert client.get("relative") == b"yes"
            assert Path(client.config_get("dir")["dir"]).is_absolute()
        assert list((cwd / ".data" / "services" / "redis" / "data").rglob("*.aof*"))
    else:
        from elasticsearch import Elasticsearch

        with Elasticsearch(url, request_timeout=30) as es:
            es.index(index="relative", id="1", document={"ok": True}, refresh=True)
            assert es.get(index="relative", id="1")["_source"] == {"ok": True}
            data = es.nodes.info()["nodes"]
            paths = next(iter(data.values()))["settings"]["path"]
            assert Path(paths["data"][0] if isinstance(paths["data"], list) else paths["data"]).is_absolute()
    r = sludge(cwd, env, "services", "stop", name)
    assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    assert not json.loads(sludge(cwd, env, "services", "status", name, "--json").stdout)["running"]
