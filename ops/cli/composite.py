"""``sludge make-composite``: build test videos (split-screen, picture-in-picture, grids)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ops.synthetic import composite
from indexer.errors import ConfigError
from ops.cli.output import emit_json, out_console


def _pair(text: str, what: str, sep: str = "x") -> tuple[int, int]:
    m = re.fullmatch(rf"\s*(\d+)\s*{sep}\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError(f"{what} must look like W{sep}H (e.g. 720{sep}1280), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@click.command("make-composite")
@click.argument("out", required=False, type=click.Path(dir_okay=False))
@click.option("--layout", type=click.Choice(composite.LAYOUTS), default="vertical", show_default=True)
@click.option("--feed", "feeds", multiple=True,
              help="A feed: PATH, PATH#t=SECONDS or gen:KIND[:SEED]. Repeat per feed; default: generated.")
@click.option("--canvas", default="720x1280", show_default=True, help="Output size WxH (even numbers).")
@click.option("--duration", type=click.FloatRange(0.1, 3600), default=6.0, show_default=True)
@click.option("--fps", type=click.IntRange(1, 120), default=25, show_default=True)
@click.option("--audio", default="tone", show_default=True,
              help="tone | noise | silence | none | PATH (audio unrelated to the feeds).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fit", type=click.Choice(composite.FITS), default="cover", show_default=True)
@click.option("--gap", type=click.IntRange(0, 512), default=0, show_default=True, help="Border between feeds, px.")
@click.option("--gap-color", default="black", show_default=True)
@click.option("--pip-corner", type=click.Choice(composite.PIP_CORNERS), default="bottom-right", show_default=True)
@click.option("--pip-scale", type=click.FloatRange(0.05, 0.9), default=0.33, show_default=True)
@click.option("--grid", "grid", default="2x2", show_default=True, help="Grid columns x rows.")
@click.option("--crf", type=click.IntRange(0, 51), default=28, show_default=True)
@click.option("--preset", type=click.Choice(composite.PRESETS), default="veryfast", show_default=True)
@click.option("--list-kinds", is_flag=True, help="List generated feed kinds and exit.")
@click.option("--demo-set", "demo_set", type=click.Path(file_okay=False), default=None,
              help="Write the demo's deterministic set (history/ and new/) into this folder instead.")
@click.option("--media-dir", type=click.Path(file_okay=False), default=None,
              help="With --demo-set: compose real clips from this folder when it exists.")
def make_composite_cmd(out: str | None, layout: str, feeds: tuple[str, ...], canvas: str, duration: float,
                       fps: int, audio: str, seed: int, fit: str, gap: int, gap_color: str, pip_corner: str,
                       pip_scale: float, grid: str, crf: int, preset: str, list_kinds: bool,
                       demo_set: str | None, media_dir: str | None) -> None:
    """Generate a test video OUT (the extension picks the container: mp4, mkv, webm, mov, avi).

    Stacks two or more feeds (real clips or generated patterns) vertically,
    side by side, as picture-in-picture or as a grid, with audio from an
    unrelated source; `--layout single` makes a plain one-scene clip.
    """
    if list_kinds:
        for kind in composite.GENERATED_KINDS:
            out_console.print(f"gen:{kind}")
        return
    composite.probe_ffmpeg()
    if demo_set is not None:
        media = Path(media_dir) if media_dir and Path(media_dir).is_dir() else None
        entries = composite.make_demo_set(demo_set, media_dir=media, seed=seed)
        source = f"real clips from {media}" if media else "generated sources"
        out_console.print(f"wrote {len(entries)} videos ({source}) and manifest.json to {demo_set}")
        return
    if out is None:
        raise ConfigError("give an output file (e.g. out.mp4) or --demo-set DIR")
    path = composite.make_composite(
        out, layout, feeds=list(feeds) or None, canvas=_pair(canvas, "--canvas"), duration=duration,
        fps=fps, audio=None if audio == "none" else audio, seed=seed, fit=fit, gap=gap, gap_color=gap_color,
        pip_corner=pip_corner, pip_scale=pip_scale, grid=_pair(grid, "--grid"), crf=crf, preset=preset,
    )
    emit_json({"path": str(path), "layout": layout, "canvas": canvas, "duration": duration})


COMMANDS = [make_composite_cmd]
