"""``sludge layout VIDEO...``: one feed or several stacked feeds, from pixels and motion alone."""

from __future__ import annotations

import sys

import click

from indexer.errors import SludgeError
from indexer.layout import analyze_layout
from ops.app import err_console
from ops.cli.output import emit_json, out_console


@click.command("layout")
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: path, layout, confidence, regions (x,y,w,h px), evidence.")
def layout_cmd(videos: tuple[str, ...], as_json: bool) -> None:
    """Classify each video's layout: single_scene, vertical, horizontal, picture-in-picture or grid.

    No model weights: straight seams that persist over time between regions
    that move and cut independently; bars, caption bands, logos and text are
    not feeds. An unreadable video gives an error line (with --json: an object
    with "error") and the rest go on; the exit status is then 1.
    """
    failed = 0
    for path in videos:
        try:
            r = analyze_layout(path)
        except (SludgeError, OSError) as e:
            failed += 1
            if as_json:
                emit_json({"path": path, "error": str(e)})
            else:
                err_console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            continue
        if as_json:
            emit_json(r.to_dict())
        else:
            regions = " ".join(f"{x},{y},{w}x{h}" for x, y, w, h in r.regions)
            out_console.print(f"[bold]{path}[/]: {r.layout} ({r.confidence:.2f}) regions {regions}",
                              soft_wrap=True)
    if failed:
        sys.exit(1)


COMMANDS = [layout_cmd]
