"""Shared helpers for command output: consoles, JSON, time parsing, path expansion."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from indexer.errors import ConfigError
from ops.usecases.times import parse_time

out_console = Console(highlight=False, soft_wrap=False)
if not out_console.is_terminal:  # logs and pipes: wide enough that paths and ids stay on one line
    out_console = Console(highlight=False, soft_wrap=False, width=200)

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
}


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value))
        except ConfigError as e:
            self.fail(str(e), param, ctx)


def expand_paths(paths: tuple[str, ...], recursive: bool) -> Iterator[tuple[str, str | None]]:
    """(path, problem) for every file to process, in a stable order.

    Files named explicitly are always tried; inside folders only files with a
    video extension are taken, so notes and thumbnails beside the videos do
    not fill the failure list. Problems (missing paths, unreadable folders)
    come out as items so the batch goes on and the summary names them.
    """
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            yield raw, "no such file or directory"
            continue
        if not p.is_dir():
            yield raw, None
            continue

        def on_error(e: OSError) -> None:
            problems.append((e.filename, f"cannot read directory: {e.strerror}"))

        problems: list[tuple[str, str]] = []
        if recursive:
            walker = os.walk(p, onerror=on_error)
        else:
            try:
                walker = iter([(str(p), [], [e.name for e in os.scandir(p) if e.is_file()])])
            except OSError as e:
                yield raw, f"cannot read directory: {e.strerror}"
                continue
        for root, dirs, files in walker:
            dirs.sort()
            for name in sorted(files):
                if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                    continue
                yield str(Path(root) / name), None
            while problems:
                yield problems.pop(0)
        while problems:
            yield problems.pop(0)
