"""Every module of the project imports alone, in a fresh interpreter.

An import loop (``ops.cli.main`` importing the command modules and each importing ``get_app`` back)
only shows when a module is imported first; within one test process everything is already loaded,
so each module gets its own interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("indexer", "search", "classifier", "ops")


def _modules() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(".".join(parts))
    return out


def _import_alone(module: str) -> tuple[str, str | None]:
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    return module, (r.stderr.strip().splitlines() or ["(no output)"])[-1] if r.returncode else None


def test_every_module_imports_alone() -> None:
    modules = _modules()
    assert "ops.cli.hooks" in modules and len(modules) > 100
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = {m: why for m, why in pool.map(_import_alone, modules) if why is not None}
    assert not failed, "\n".join(f"{m}: {why}" for m, why in sorted(failed.items()))
