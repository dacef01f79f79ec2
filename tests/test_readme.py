"""The README's commands, run as a newcomer would run them.

Every ``sh`` block of README.md runs in order, as written, in one bash session
in a fresh empty folder, with the default configuration plus only what the
README itself exports: no ``SLUDGE_*`` variable of the test environment leaks
in, and the data directory is the default relative ``.data``. A command that
exits non-zero fails the test unless its line says ``# exit N``. A block the
suite does not run is marked ``<!-- not run by tests/test_readme.py: why -->``
on the line before it; synopses that are not commands are ``text`` blocks.

This is how the launchers' relative-path bug (a server started with its own
folder as working directory, handed paths relative to the caller's) would
have been caught: the README starts Redis and Elasticsearch from the default
``.data``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_MARK = re.compile(r"<!--\s*not run by tests/test_readme\.py:\s*(.+?)\s*-->")
EXPECT = re.compile(r"#\s*exit (\d+)\b")
#: What a synopsis has and a command does not: optional flags, ellipses, alternatives (start|stop).
SYNOPSIS = re.compile(r"\[--|\.\.\.|…|\w\|\w")
#: The ports the README's servers use by default.
PORTS = {"redis": 6399, "elasticsearch": 9200, "the API": 8080}

pytestmark = pytest.mark.slow


def readme_blocks(text: str) -> list[tuple[int, list[str], str | None]]:
    """(first line number, lines, reason it is skipped or None) of every ``sh`` block."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i + 1
            j = start
            while lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            m = SKIP_MARK.search(prev)
            out.append((start + 1, lines[start:j], m.group(1) if m else None))
            i = j
        i += 1
    return out


def commands(first_line: int, lines: list[str]) -> list[tuple[int, str, int | None]]:
    """(line number, command, expected exit status or None for a background job)."""
    out, buf, at = [], "", 0
    for n, line in enumerate(lines, first_line):
        if not buf:
            at = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip() + "\n"
            continue
        cmd = (buf + line).strip()
        buf = ""
        if not cmd or cmd.startswith("#"):
            continue
        m = EXPECT.search(cmd)
        code = re.sub(r"\s+#.*$", "", cmd)
        background = code.endswith("&") and not code.endswith("&&")
        out.append((at, cmd, None if background else int(m.group(1)) if m else 0))
    return out


def script(blocks) -> str:
    """One bash script: each command, then a check of its exit status naming the README line."""
    parts = ["set -o pipefail"]
    for first, lines, _ in blocks:
        for n, cmd, expected in commands(first, lines):
            parts.append(f"echo {shlex.quote(f'$ README.md:{n}: {cmd.splitlines()[0]}')}")
            parts.append(cmd)
            if expected is not None:
                parts.append(f"__rc=$?; if [ $__rc -ne {expected} ]; then echo {shlex.quote(f'README.md:{n}: ')}"
                             f"\"exit $__rc, expected {expected}\" >&2; exit 97; fi")
    return "\n".join(parts) + "\n"


def test_every_sh_block_is_run_or_says_why():
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert len([b for b in blocks if b[2] is None]) >= 4
    for first, lines, reason in blocks:
        assert reason is None or len(reason) > 10, f"README.md:{first}: say why the block is not run"
        for n, cmd, _ in commands(first, lines):
            assert not SYNOPSIS.search(re.sub(r"\s+#.*$", "", cmd)), \
                f"README.md:{n} looks like a synopsis ({cmd!r}): make its block ```text"


@pytest.mark.timeout(1800)
def test_readme_commands_run_as_written():
    for what, port in PORTS.items():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port}, which the README's {what} uses by default, is taken on this machine")
    blocks = [b for b in readme_blocks((REPO / "README.md").read_text()) if b[2] is None]
    # Not pytest's tmp_path: its parents are private to root, and Elasticsearch runs as nobody.
    work = Path(tempfile.mkdtemp(prefix="sludge-readme-"))
    work.chmod(0o755)
    (work / "run.sh").write_text(script(blocks))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUDGE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = work / "run.log"  # a file, not a pipe: the README's background jobs would hold a pipe open
    with open(log, "w") as f:
        proc = subprocess.Popen(["bash", "run.sh"], cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        proc.wait(timeout=1500)
    except subprocess.TimeoutExpired:
        pytest.fail("the README's commands did not finish within 25 minutes:\n" + log.read_text()[-6000:])
    finally:
        _clean_up(proc, work, env)
    assert proc.returncode == 0, log.read_text()[-8000:]
    assert (work / ".data" / "services" / "redis" / "redis.log").is_file()  # the launcher's relative-path bug
    assert (work / ".data" / "services" / "es" / "es.log").is_file()


def _clean_up(proc: subprocess.Popen, work: Path, env: dict) -> None:
    """No server or background job outlives the test, whatever happened."""
    sludge = str(Path(sys.executable).parent / "sludge")
    for name in ("es", "redis"):
        subprocess.run([sludge, "services", "stop", name], cwd=work, env=env, capture_output=True, timeout=120)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
