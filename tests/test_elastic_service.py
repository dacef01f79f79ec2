"""The Elasticsearch launcher: integrity checks and the services CLI (the running server is the session's)."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.request

import pytest

from ops.services.base import ServiceError
from ops.services.elastic import BUILD_HASH, NPM_PARTS, PART_SUFFIXES, TARBALL, install
from test_cli import env, run  # noqa: F401


def fake_parts(folder, payload: bytes):
    folder.mkdir(parents=True)
    for spec, suffix, i in zip(NPM_PARTS, PART_SUFFIXES, range(5)):
        name = spec.split("/", 1)[1].rsplit("@", 1)[0]
        with tarfile.open(folder / f"dragon-den-{name}-0.0.3.tgz", "w:gz") as tf:
            data = payload[i::5]
            info = tarfile.TarInfo(f"package/target/{TARBALL}.{suffix}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_tampered_download_is_refused_before_unpacking(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SLUDGE_ES_CACHE", str(cache))
    fake_parts(cache / "parts", b"definitely not elasticsearch" * 100)
    with pytest.raises(ServiceError) as e:
        install(progress=lambda m: None)
    assert "SHA-512" in str(e.value) and "refusing to unpack" in str(e.value)
    assert not (cache / "elasticsearch-8.12.2").exists() and not (cache / "installed.json").exists()
    assert not (cache / "parts").exists()  # fetched again next time


def test_session_server_is_the_verified_build_on_loopback(es_url):
    info = json.loads(urllib.request.urlopen(es_url, timeout=10).read())
    assert info["version"]["number"] == "8.12.2" and info["version"]["build_hash"] == BUILD_HASH
    assert es_url.startswith("http://127.0.0.1:")


def test_services_cli_status_when_not_running(env):  # noqa: F811
    out = run("services", "status", "es", "--json").stdout
    assert json.loads(out.splitlines()[-1]) == {"name": "es", "running": False}
    assert "es was not running" in run("services", "stop", "es").stdout


@pytest.mark.slow
def test_server_dies_with_the_process_that_started_it():
    """A test session SIGKILLed (timeout, OOM killer) must not leave its Elasticsearch running."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from ops.services.base import group_alive

    root = Path(tempfile.mkdtemp(prefix="sludge-es-orphan-"))  # reachable by the unprivileged server user
    root.chmod(0o755)
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import json, sys, time\n"
         "from ops.services.base import free_port\n"
         "from ops.services.elastic import ElasticService\n"
         f"st = ElasticService(__import__('pathlib').Path({str(root)!r}), heap='256m', die_with_parent=True)"
         ".start(free_port())\n"
         "print(json.dumps({'pid': st.pid, 'url': st.url}), flush=True)\n"
         "time.sleep(3600)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = starter.stdout.readline()
        assert line, "the starter process printed nothing (Elasticsearch did not start)"
        st = json.loads(line)
        assert group_alive(st["pid"])
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 60
        while group_alive(st["pid"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_alive(st["pid"]), "Elasticsearch outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
        shutil.rmtree(root, ignore_errors=True)
