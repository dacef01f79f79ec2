"""Runs every benchmark under bench/ and writes bench/RESULTS.md (``make bench``).

Each benchmark runs in its own process with a time limit; its figures are the
JSON object on its last line of output. A benchmark that fails, times out or
prints no JSON is recorded as such (with the end of its output) and the rest
still run. ``--quick`` (``make bench BENCH_QUICK=1``) runs every one at tiny
sizes, to check the machinery, not to measure anything. Figures from a shared
machine are only comparable within one run.

    python bench/report.py [--quick] [--only ingest,encode] [--out bench/RESULTS.md] [--timeout-scale 2]

``--only`` reruns the named benchmarks and replaces only their sections of an existing --out file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine_info  # noqa: E402

REPO = HERE.parent


@dataclass
class Bench:
    name: str
    script: str
    what: str
    args: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    timeout_s: float = 1800.0
    quick_timeout_s: float = 300.0


BENCHES = [
    Bench("encode", "encode.py", "encoder images/s per backend and precision (batch 1 and 16)",
          quick=["--seconds", "0.5", "--backends", "torch,openvino-fp32"], timeout_s=1800),
    Bench("finetune", "finetune.py", "contrastive fine-tuning: training pairs/s, frozen-image phase vs joint",
          args=["--models", "sludge-tiny,ViT-B-32", "--pairs", "256"],
          quick=["--pairs", "32", "--batch-size", "16", "--epochs", "2"], timeout_s=1800),
    Bench("migrate", "migrate.py", "sludge migrate of 100k frames, embedded and Elasticsearch: frames/s, killed -9 "
          "and resumed (lost, duplicated), a query loop's errors throughout",
          quick=["--frames", "2000", "--per-video", "10", "--batch", "8", "--backends", "embedded"], timeout_s=2400),
    Bench("ingest", "ingest.py", "end-to-end ingest, overlapped vs sequential pipeline",
          quick=["--limit", "3"], timeout_s=3600),
    Bench("layout", "layout.py", "layout analysis videos/min on 30 s 720p videos",
          quick=["--duration", "3", "--repeat", "1", "--workers", "2", "--workdir", "/tmp/sludge-bench-layout-quick"],
          timeout_s=1800),
    Bench("bank_knn", "bank_knn.py", "Redis exemplar bank: KNN latency, recall, inserts, memory (own Redis)",
          quick=["--n", "2000", "--queries", "50", "--policies", "4"], timeout_s=3600),
    Bench("history", "history.py", "frame history on Elasticsearch: bulk, kNN latency, recall (own server)",
          quick=["--frames", "2000", "--queries", "20", "--heap", "512m", "--no-merge"], timeout_s=3600,
          quick_timeout_s=600),
    Bench("classifier", "classifier.py", "confirm model cost per frame; Q-Former pooling recall",
          quick=["--repeats", "1", "--pool-images", "20"], timeout_s=3600, quick_timeout_s=600),
    Bench("hooks_load", "hooks_load.py", "hooks service under load: uploads → decisions → webhooks (own Redis/ES)",
          quick=["--uploads", "8", "--concurrency", "4", "--workers", "1", "--seconds", "1", "--timeout", "300"],
          timeout_s=5400, quick_timeout_s=600),
    Bench("hooks_faults", "hooks_load.py", "the same under faults: 5 worker kills and a Redis kill (own Redis/ES)",
          args=["--faults", "--uploads", "200"],
          quick=["--faults", "--uploads", "12", "--concurrency", "4", "--seconds", "1", "--worker-kills", "1",
                 "--kill-every", "3", "--redis-kill-at", "5", "--redis-down", "2", "--timeout", "300"],
          timeout_s=3600, quick_timeout_s=600),
]


def unlisted() -> list[str]:
    """Scripts under bench/ that BENCHES does not name (added later): listed in RESULTS.md as not run."""
    known = {b.script for b in BENCHES} | {"machine.py", "report.py", "__init__.py"}
    return sorted(p.name for p in HERE.glob("*.py") if p.name not in known)


@dataclass
class Outcome:
    bench: Bench
    status: str  # ok | failed | timeout | no-json
    seconds: float
    result: dict | None = None
    tail: str = ""
    returncode: int | None = None


def run_one(b: Bench, quick: bool, scale: float) -> Outcome:
    cmd = [sys.executable, str(HERE / b.script), *(b.quick if quick else b.args)]
    limit = (b.quick_timeout_s if quick else b.timeout_s) * scale
    print(f"== {b.name}: {' '.join(cmd[1:])} (limit {limit:.0f} s)", flush=True)
    t0 = time.perf_counter()
    # Its own process group, so a timeout also ends what it started (servers are stopped on SIGTERM).
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _end(proc)
        out = proc.communicate()[0] or ""
        return Outcome(b, "timeout", time.perf_counter() - t0, tail=_tail(out), returncode=proc.returncode)
    seconds = time.perf_counter() - t0
    result = _last_json(out)
    if proc.returncode != 0:
        return Outcome(b, "failed", seconds, result, _tail(out), proc.returncode)
    if result is None:
        return Outcome(b, "no-json", seconds, None, _tail(out), proc.returncode)
    return Outcome(b, "ok", seconds, result, _tail(out, 5), proc.returncode)


def _end(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_json(out: str) -> dict | None:
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
        if line:
            return None  # the last line must be the JSON object
    return None


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


# -- rendering ---------------------------------------------------------------------------------

def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested figures as (dotted.key, scalar) rows; lists of dicts are indexed, short lists joined."""
    rows: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            label = v.get("filter") or v.get("name") if isinstance(v, dict) else None
            rows += flatten(v, f"{prefix}[{i}{': ' + str(label) if label else ''}]")
    elif isinstance(value, list):
        rows.append((prefix, ", ".join(str(v) for v in value)))
    else:
        rows.append((prefix, value))
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def ingest_table(r: dict) -> list[str]:
    if not ("sequential" in r and "overlapped" in r):
        return []
    s, o = r["sequential"], r["overlapped"]
    lines = ["| pipeline | videos | frames | wall s | videos/min | frames/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, x in (("sequential", s), ("overlapped", o)):
        lines.append(f"| {name} | {x['videos']} | {x['frames']} | {_cell(x['wall_seconds'])} | "
                     f"{_cell(x['videos_per_minute'])} | {_cell(x['frames_per_second'])} |")
    cfg = r.get("overlap_config", {})
    lines += ["", (f"Overlapped / sequential: **x{r.get('overlapped_speedup')}** "
                   f"(decode threads {cfg.get('decode_threads')}, transcribe threads "
                   f"{cfg.get('transcribe_threads')}, queue size {cfg.get('queue_size')})."), ""]
    return lines


def _sections(md: str) -> tuple[dict[str, str], dict[str, str]]:
    """An earlier RESULTS.md: each benchmark's section (from its ``## name`` line) and summary row."""
    sections: dict[str, str] = {}
    for chunk in md.split("\n## ")[1:]:
        name = chunk.split("\n", 1)[0].strip()
        if name not in ("Machine", "Summary"):
            sections[name] = "## " + chunk.rstrip("\n")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| \[(\w+)\]\(#\w+\) \|.*$", md, re.M)}
    return sections, rows


def merge(new_md: str, old_md: str, started: str) -> str:
    """``--only``: the benchmarks run now replace their sections (marked with the date) in the earlier
    file; every other section and summary row is kept as it was, so one rerun loses nothing."""
    new_sections, new_rows = _sections(new_md)
    old_sections, old_rows = _sections(old_md)
    head = old_md.split("\n## ", 1)[0] if old_sections else new_md.split("\n## ", 1)[0]
    out = [head.rstrip("\n"), "", "## Machine", ""]
    out += [new_md.split("\n## Machine", 1)[1].split("\n## ", 1)[0].strip("\n"), "", "## Summary", "",
            "| benchmark | what | status | seconds |", "|---|---|---|---:|"]
    names = [b.name for b in BENCHES]
    out += [new_rows.get(n) or old_rows[n] for n in names if n in new_rows or n in old_rows]
    for n in names:
        if n in new_sections:
            first, rest = new_sections[n].split("\n", 1)
            out += ["", first, "", f"(rerun alone with `--only` on {started})", rest.rstrip("\n")]
        elif n in old_sections:
            out += ["", old_sections[n]]
    return "\n".join(out) + "\n"


def render(outcomes: list[Outcome], machine: dict, quick: bool, started: str, total_s: float) -> str:
    md = ["# Benchmark results", ""]
    if quick:
        md += [("> **Quick run** (`make bench BENCH_QUICK=1`): tiny sizes that check the benchmarks run; "
                "these figures measure nothing. Run `make bench` on a quiet machine for real figures."), ""]
    md += [(f"Date: {started} (UTC); all benchmarks took {total_s / 60:.1f} min. "
            "Written by `bench/report.py`; each figure is from the JSON object its benchmark printed last."), ""]
    md += ["## Machine", "", "| | |", "|---|---|"]
    for k, v in flatten(machine):
        md.append(f"| {k} | {_cell(v)} |")
    md += ["", "## Summary", "", "| benchmark | what | status | seconds |", "|---|---|---|---:|"]
    for o in outcomes:
        md.append(f"| [{o.bench.name}](#{o.bench.name}) | {o.bench.what} | {o.status} | {o.seconds:.0f} |")
    for name in unlisted():
        md.append(f"| {name} | no entry in `bench/report.py` | not run | |")
    for o in outcomes:
        cmd = " ".join(["python", f"bench/{o.bench.script}", *(o.bench.quick if quick else o.bench.args)])
        md += ["", f"## {o.bench.name}", "", f"`{cmd}`: {o.status}, {o.seconds:.0f} s", ""]
        if o.status != "ok":
            md += [f"Exit status {o.returncode}. End of its output:", "", "```", o.tail or "(nothing)", "```", ""]
        if o.result:
            r = {k: v for k, v in o.result.items() if k not in ("machine", "bench", "benchmark")}
            if o.bench.name == "ingest":
                md += ingest_table(r)
            md += ["| figure | value |", "|---|---:|"]
            md += [f"| {k} | {_cell(v)} |" for k, v in flatten(r)]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the machinery, measures nothing")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json-out", default=None, help="also write every result as one JSON file")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every time limit")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {b.name for b in BENCHES}
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; known: {[b.name for b in BENCHES]}")
    chosen = [b for b in BENCHES if not names or b.name in names]
    for name in unlisted():
        print(f"note: bench/{name} has no entry in bench/report.py's BENCHES; not run", flush=True)
    machine = machine_info()
    started = machine["date"]
    t0 = time.perf_counter()
    outcomes = []
    for b in chosen:
        o = run_one(b, args.quick, args.timeout_scale)
        print(f"   {b.name}: {o.status} in {o.seconds:.0f} s", flush=True)
        if o.status != "ok":
            print(o.tail, flush=True)
        outcomes.append(o)
    total = time.perf_counter() - t0
    out = Path(args.out)
    md = render(outcomes, machine, args.quick, started, total)
    if names and out.exists() and not args.quick:
        md = merge(md, out.read_text(), started)
    out.write_text(md)
    print(f"wrote {out}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"date": started, "quick": args.quick, "machine": machine,
             "results": {o.bench.name: {"status": o.status, "seconds": round(o.seconds, 1), "result": o.result}
                         for o in outcomes}}, indent=1))
    if any(o.status != "ok" for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
