"""Tests for ops.synthetic.composite: every check decodes the generated file with PyAV.

Videos are small (a few hundred pixels, 1-2 s) so the whole file runs in well
under a minute on two cores. Tests that need real media use ../shared/media
and are skipped, with the reason, when it is absent.
"""

from __future__ import annotations

import itertools
import json
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from ops.synthetic.composite import (
    GENERATED_KINDS,
    LAYOUTS,
    Feed,
    generated_source,
    make_composite,
    make_demo_set,
    make_single,
    probe_ffmpeg,
)
from indexer.errors import CompositeError, SludgeError

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared media not found at {MEDIA}")

# Portrait and landscape canvases small enough to encode in a fraction of a second.
P = (180, 320)
L = (320, 180)
FAST = {"preset": "ultrafast"}

# _PALETTE[0..3] in composite.py: what gen:solid:N paints.
RED, GREEN, BLUE, YELLOW = (230, 40, 40), (40, 190, 60), (40, 80, 230), (240, 220, 40)


# ------------------------------------------------------------------ helpers


class Decoded:
    def __init__(self, path: Path) -> None:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            self.width, self.height = v.codec_context.width, v.codec_context.height
            self.fps = float(v.average_rate) if v.average_rate else None
            self.vcodec = v.codec_context.codec.canonical_name
            self.container_duration = c.duration / 1_000_000 if c.duration else None
            self.has_audio = bool(c.streams.audio)
            self.acodec = (
                c.streams.audio[0].codec_context.codec.canonical_name if c.streams.audio else None
            )
            self.frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        self.audio: np.ndarray | None = None
        if self.has_audio:
            with av.open(str(path)) as c:
                chunks = [f.to_ndarray().astype(np.float64).ravel() for f in c.decode(audio=0)]
            self.audio = np.concatenate(chunks) if chunks else np.zeros(0)

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps

    def mid(self) -> np.ndarray:
        return self.frames[len(self.frames) // 2].astype(np.float64)


def check_basic(d: Decoded, canvas: tuple[int, int], duration: float, fps: int) -> None:
    assert (d.width, d.height) == canvas
    assert d.fps == pytest.approx(fps, abs=0.01)
    assert d.duration == pytest.approx(duration, abs=0.2)
    assert d.container_duration == pytest.approx(duration, abs=0.2)


def mean_rgb(img: np.ndarray) -> np.ndarray:
    return img.reshape(-1, 3).mean(axis=0)


def colour_close(img: np.ndarray, rgb: tuple[int, int, int], tol: float = 25.0) -> bool:
    return bool(np.abs(mean_rgb(img) - np.array(rgb)).max() < tol)


def no_leftovers(directory: Path, name: str) -> None:
    """Neither the output nor a temporary sibling of it may remain."""
    assert not (directory / name).exists()
    stem = Path(name).stem
    assert [p.name for p in directory.iterdir() if stem in p.name] == []


# -------------------------------------------------------------------- ffmpeg


def test_probe_ffmpeg_returns_version() -> None:
    assert probe_ffmpeg().startswith("ffmpeg version")


def test_missing_ffmpeg_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUDGE_FFMPEG", "no-such-ffmpeg-binary")
    with pytest.raises(CompositeError, match="apt-get install ffmpeg"):
        probe_ffmpeg()
    with pytest.raises(CompositeError, match="apt-get install ffmpeg"):
        make_single(tmp_path / "x.mp4", canvas=P, duration=1)
    no_leftovers(tmp_path, "x.mp4")


# -------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "layout,canvas,extra",
    [
        ("single", P, {}),
        ("vertical", P, {}),
        ("vertical", P, {"feeds": ["gen:plasma", "gen:life", "gen:boxes"], "gap": 4}),
        ("horizontal", L, {}),
        ("horizontal", L, {"fit": "contain"}),
        ("pip", L, {"pip_corner": "top-left", "gap": 2}),
        ("grid", P, {}),
        ("grid", (240, 160), {"grid": (3, 2)}),
    ],
)
def test_layout_size_duration_fps(tmp_path: Path, layout: str, canvas, extra) -> None:
    out = make_composite(
        tmp_path / f"{layout}.mp4",
        layout,
        canvas=canvas,
        duration=1.6,
        fps=15,
        seed=3,
        **FAST,
        **extra,
    )
    assert out == tmp_path / f"{layout}.mp4" and out.is_file()
    d = Decoded(out)
    check_basic(d, canvas, 1.6, 15)
    assert d.has_audio and d.acodec == "aac"  # default: generated tone
    assert d.vcodec == "h264"
    assert set(LAYOUTS) == {"single", "vertical", "horizontal", "pip", "grid"}


def test_default_canvas_is_vertical_720x1280(tmp_path: Path) -> None:
    d = Decoded(make_single(tmp_path / "s.mp4", source="gen:solid:1", duration=1.0, **FAST))
    check_basic(d, (720, 1280), 1.0, 25)


def test_every_generated_kind_renders(tmp_path: Path) -> None:
    """All kinds in one 5x2 grid: one ffmpeg run renders each of them."""
    assert len(GENERATED_KINDS) == 10
    feeds = [f"gen:{k}:5" for k in GENERATED_KINDS]
    d = Decoded(
        make_composite(
            tmp_path / "all.mp4",
            "grid",
            feeds=feeds,
            grid=(5, 2),
            canvas=(400, 240),
            duration=1.0,
            fps=10,
            audio=None,
            **FAST,
        )
    )
    check_basic(d, (400, 240), 1.0, 10)
    cells = [
        d.mid()[r * 120 : (r + 1) * 120, c * 80 : (c + 1) * 80] for r in range(2) for c in range(5)
    ]
    # Every non-flat kind shows structure; the solid one is flat.
    stds = {k: float(cell.std(axis=(0, 1)).max()) for k, cell in zip(GENERATED_KINDS, cells)}
    assert stds["solid"] < 3
    assert all(s > 5 for k, s in stds.items() if k not in ("solid", "gradients")), stds


def test_generated_source_is_seeded() -> None:
    for kind in GENERATED_KINDS:
        assert generated_source(kind, 1) == generated_source(kind, 1)
        assert generated_source(kind, 1) != generated_source(kind, 2), kind
    with pytest.raises(CompositeError, match="unknown generated source kind 'nope'"):
        generated_source("nope", 0)


# -------------------------------------------------------------------- audio


def test_audio_none_has_no_audio_stream(tmp_path: Path) -> None:
    d = Decoded(make_single(tmp_path / "a.mp4", canvas=P, duration=1, audio=None, **FAST))
    assert not d.has_audio


def test_generated_audio_kinds(tmp_path: Path) -> None:
    levels = {}
    for kind in ("tone", "noise", "silence"):
        d = Decoded(make_single(tmp_path / f"{kind}.mp4", canvas=P, duration=1, audio=kind, **FAST))
        assert d.has_audio and d.audio is not None and d.audio.size > 0
        levels[kind] = float(np.abs(d.audio).max())
    assert levels["silence"] < 1e-3
    assert levels["tone"] > 0.05 and levels["noise"] > 0.05


def _write_wav(path: Path, seconds: float = 0.7) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    pcm = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path


def test_audio_from_file_is_looped_to_duration(tmp_path: Path) -> None:
    wav = _write_wav(tmp_path / "beep.wav", 0.7)
    d = Decoded(make_single(tmp_path / "a.mp4", canvas=P, duration=2.0, audio=wav, **FAST))
    check_basic(d, P, 2.0, 25)
    assert d.has_audio and d.audio is not None
    # 48 kHz stereo for 2 s, sound all the way through (the 0.7 s file loops).
    per_ch = d.audio.size / 2
    assert per_ch == pytest.approx(2.0 * 48000, rel=0.05)
    tail = d.audio[-int(0.3 * 48000) * 2 :]
    assert np.abs(tail).max() > 0.1


@needs_media
def test_audio_from_speech_file(tmp_path: Path) -> None:
    speech = MEDIA / "speech" / "openai-whisper__jfk.flac"
    d = Decoded(make_single(tmp_path / "a.mp4", canvas=P, duration=1.5, audio=speech, **FAST))
    assert d.has_audio and d.acodec == "aac"


# ------------------------------------------------------------------ content


def test_vertical_halves_differ_with_clean_seam(tmp_path: Path) -> None:
    _, H = P
    d = Decoded(
        make_composite(
            tmp_path / "v.mp4",
            "vertical",
            feeds=["gen:plasma:1", "gen:smptehdbars:2"],
            canvas=P,
            duration=1.0,
            audio=None,
            crf=18,
            **FAST,
        )
    )
    f = d.mid()
    top, bottom = f[: H // 2], f[H // 2 :]
    assert np.abs(mean_rgb(top) - mean_rgb(bottom)).max() > 20
    assert np.abs(top - bottom).mean() > 40
    # Bars: the upper part of the bottom cell is vertical stripes (columns are
    # constant, but for a seed-placed box); plasma varies down every column.
    assert np.median(bottom[4 : H // 4].std(axis=0)) < 3
    assert np.median(top.std(axis=0)) > 15
    # The seam: near the middle, the largest change between neighbouring rows
    # is exactly between row H/2-1 (last of the top feed) and row H/2.
    row_change = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2))  # [y] = |row y+1 - row y|
    window = range(H // 2 - 20, H // 2 + 20)
    assert max(window, key=lambda y: row_change[y]) == H // 2 - 1
    assert row_change[H // 2 - 1] > 5 * np.median(row_change[list(window)])


def test_vertical_gap_band_has_gap_colour(tmp_path: Path) -> None:
    _, H = P
    d = Decoded(
        make_composite(
            tmp_path / "g.mp4",
            "vertical",
            feeds=["gen:solid:2", "gen:solid:3"],
            canvas=P,
            duration=1.0,
            audio=None,
            gap=8,
            gap_color="white",
            crf=18,
            **FAST,
        )
    )
    f = d.mid()
    cell = (H - 8) // 2  # 156: rows 0..155 top, 156..163 gap, 164..319 bottom
    assert colour_close(f[: cell - 2], BLUE)
    assert colour_close(f[cell + 2 : cell + 6], (255, 255, 255), tol=20)
    assert colour_close(f[cell + 8 + 2 :], YELLOW)


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_pip_sits_in_chosen_corner(tmp_path: Path, corner: str) -> None:
    W, H = L
    d = Decoded(
        make_composite(
            tmp_path / "p.mp4",
            "pip",
            feeds=["gen:solid:0", "gen:solid:2"],
            canvas=L,
            duration=1.0,
            fps=10,
            audio=None,
            pip_corner=corner,
            pip_scale=0.3,
            **FAST,
        )
    )
    f = d.mid()
    win = {
        "top-left": f[: H // 3, : W // 3],
        "top-right": f[: H // 3, -W // 3 :],
        "bottom-left": f[-H // 3 :, : W // 3],
        "bottom-right": f[-H // 3 :, -W // 3 :],
    }
    for name, region in win.items():
        blue_share = float((np.abs(region - np.array(BLUE)).max(axis=2) < 40).mean())
        if name == corner:
            assert blue_share > 0.4, (name, blue_share)
        else:
            assert blue_share == 0.0, (name, blue_share)
    assert colour_close(f[H // 2 - 10 : H // 2 + 10, W // 2 - 10 : W // 2 + 10], RED)


def test_grid_quadrants_in_row_major_order(tmp_path: Path) -> None:
    W, H = P
    d = Decoded(
        make_composite(
            tmp_path / "g.mp4",
            "grid",
            feeds=[f"gen:solid:{i}" for i in range(4)],
            canvas=P,
            duration=1.0,
            audio=None,
            **FAST,
        )
    )
    f = d.mid()
    q = [f[: H // 2, : W // 2], f[: H // 2, W // 2 :], f[H // 2 :, : W // 2], f[H // 2 :, W // 2 :]]
    for region, rgb in zip(q, (RED, GREEN, BLUE, YELLOW)):
        assert colour_close(region[4:-4, 4:-4], rgb)


def test_grid_default_feeds_four_distinct_quadrants(tmp_path: Path) -> None:
    W, H = P
    d = Decoded(make_composite(tmp_path / "g.mp4", "grid", canvas=P, duration=1.0, seed=11, **FAST))
    f = d.mid()
    q = [f[: H // 2, : W // 2], f[: H // 2, W // 2 :], f[H // 2 :, : W // 2], f[H // 2 :, W // 2 :]]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(q[i] - q[j]).mean() > 10, (i, j)


def test_fit_contain_letterboxes_a_landscape_feed(tmp_path: Path) -> None:
    src = make_single(
        tmp_path / "land.mp4",
        source="gen:testsrc2:1",
        canvas=(320, 180),
        duration=1.0,
        audio=None,
        **FAST,
    )
    d = Decoded(
        make_single(
            tmp_path / "boxed.mp4",
            source=src,
            canvas=P,
            duration=1.0,
            audio=None,
            fit="contain",
            **FAST,
        )
    )
    f = d.mid()
    # 320x180 into 180x320: scaled to 180x~102, bars of ~109 px above and below.
    assert f[:100].max() < 30 and f[-100:].max() < 30
    assert f[130:190].std() > 20
    d2 = Decoded(
        make_single(
            tmp_path / "cover.mp4",
            source=src,
            canvas=P,
            duration=1.0,
            audio=None,
            fit="cover",
            **FAST,
        )
    )
    assert d2.mid()[:100].std() > 20


# ----------------------------------------------------------------- real media


@needs_media
def test_real_clips_vertical_composite(tmp_path: Path) -> None:
    dog = MEDIA / "video" / "real" / "facebookresearch-sam2__01_dog.mp4"
    chaplin = MEDIA / "video" / "film" / "Zulko-moviepy__chaplin.mp4"
    speech = MEDIA / "speech" / "Uberi-speech_recognition__english.wav"
    d = Decoded(
        make_composite(
            tmp_path / "real.mp4",
            "vertical",
            feeds=[f"{dog}#t=2", Feed(chaplin, 1.0)],
            canvas=(270, 480),
            duration=2.0,
            audio=speech,
            **FAST,
        )
    )
    check_basic(d, (270, 480), 2.0, 25)
    assert d.has_audio
    f = d.mid()
    top, bottom = f[:240], f[240:]

    # Chaplin is black and white: the bottom half has no colour, the dog clip has.
    def saturation(x: np.ndarray) -> float:
        return float((x.max(axis=2) - x.min(axis=2)).mean())

    assert saturation(bottom) < 8 < saturation(top)


@needs_media
@pytest.mark.parametrize(
    "name",
    [
        "intel-iot-devkit-sample-videos__eat.mkv",  # 1.57 s
        "open-mmlab-mmaction2__tools__data__skeleton__S001C001P001R001A001_rgb.avi",  # AVI that broke -stream_loop timing
        "dmlc-decord__video_90.mov",  # 3 frames, rotation metadata
    ],
)
def test_short_real_clip_is_looped(tmp_path: Path, name: str) -> None:
    clip = MEDIA / "video" / "real" / name
    d = Decoded(
        make_single(
            tmp_path / "loop.mp4", source=clip, canvas=P, duration=4.0, fps=10, audio=None, **FAST
        )
    )
    check_basic(d, P, 4.0, 10)
    if "video_" not in name:
        # Still moving in the last second: looped, not frozen on the last frame.
        last = [fr.astype(np.float64) for fr in d.frames[-10:]]
        assert max(np.abs(a - b).mean() for a, b in itertools.pairwise(last)) > 1.0


@needs_media
def test_offset_forms_agree_and_offset_past_end_fails(tmp_path: Path) -> None:
    clip = MEDIA / "video" / "real" / "facebookresearch-sam2__02_cups.mp4"
    a = Decoded(
        make_single(
            tmp_path / "a.mp4", source=f"{clip}#t=3", canvas=P, duration=1, audio=None, **FAST
        )
    )
    b = Decoded(
        make_single(
            tmp_path / "b.mp4", source=Feed(clip, 3.0), canvas=P, duration=1, audio=None, **FAST
        )
    )
    c = Decoded(
        make_single(tmp_path / "c.mp4", source=clip, canvas=P, duration=1, audio=None, **FAST)
    )
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert np.abs(a.frames[0].astype(float) - c.frames[0].astype(float)).mean() > 3
    with pytest.raises(CompositeError, match="past the end"):
        make_single(tmp_path / "d.mp4", source=Feed(clip, 99.0), canvas=P, duration=1)
    no_leftovers(tmp_path, "d.mp4")


@needs_media
def test_still_image_feed(tmp_path: Path) -> None:
    img = MEDIA / "images" / "imageio-imageio-binaries__astronaut.png"
    d = Decoded(
        make_composite(
            tmp_path / "img.mp4",
            "horizontal",
            feeds=[img, "gen:testsrc2"],
            canvas=L,
            duration=1.0,
            audio=None,
            **FAST,
        )
    )
    check_basic(d, L, 1.0, 25)
    left = [fr[:, :160].astype(np.float64) for fr in d.frames]
    assert np.abs(left[0] - left[-1]).mean() < 3  # a still stays still


# --------------------------------------------------------------- containers


@pytest.mark.parametrize(
    "ext,vcodec,acodec",
    [
        (".mkv", "h264", "aac"),
        (".mov", "h264", "aac"),
        (".webm", "vp9", "opus"),
        (".avi", "mpeg4", "mp3"),
    ],
)
def test_container_follows_extension(tmp_path: Path, ext: str, vcodec: str, acodec: str) -> None:
    d = Decoded(make_single(tmp_path / f"c{ext}", canvas=P, duration=1.0, fps=10, **FAST))
    assert (d.vcodec, d.acodec) == (vcodec, acodec)
    assert (d.width, d.height) == P
    assert d.duration == pytest.approx(1.0, abs=0.2)


# -------------------------------------------------------------- determinism


def test_same_arguments_same_frames(tmp_path: Path) -> None:
    kw = {
        "canvas": P,
        "duration": 1.0,
        "fps": 10,
        "seed": 7,
        "audio": "noise",
        "feeds": ["gen:life", "gen:cellauto", "gen:gradients", "gen:mandelbrot"],
    }
    a = make_composite(tmp_path / "a.mp4", "grid", **kw)
    b = make_composite(tmp_path / "b.mp4", "grid", **kw)
    da, db = Decoded(a), Decoded(b)
    assert len(da.frames) == len(db.frames) == 10
    assert all(np.array_equal(x, y) for x, y in zip(da.frames, db.frames))
    assert np.array_equal(da.audio, db.audio)
    assert a.read_bytes() == b.read_bytes()  # bitexact flags: byte-identical too
    c = Decoded(make_composite(tmp_path / "c.mp4", "grid", **{**kw, "seed": 8}))
    assert not np.array_equal(da.frames[5], c.frames[5])


# --------------------------------------------------------------- bad input


def _expect_error(tmp_path: Path, match: str, **kw) -> CompositeError:
    out = tmp_path / "bad.mp4"
    kw.setdefault("layout", "single")
    layout = kw.pop("layout")
    with pytest.raises(CompositeError, match=match) as ei:
        make_composite(out, layout, canvas=kw.pop("canvas", P), duration=1.0, **kw)
    assert isinstance(ei.value, SludgeError)
    assert str(out) in str(ei.value)
    no_leftovers(tmp_path, "bad.mp4")
    return ei.value


def test_missing_feed_file(tmp_path: Path) -> None:
    _expect_error(
        tmp_path,
        r"feed 2: no such file: .*missing\.mp4",
        layout="vertical",
        feeds=["gen:solid", tmp_path / "missing.mp4"],
    )


def test_unknown_layout(tmp_path: Path) -> None:
    _expect_error(tmp_path, "unknown layout 'diagonal'", layout="diagonal")


def test_odd_canvas(tmp_path: Path) -> None:
    _expect_error(tmp_path, "canvas 181x320 must have even", canvas=(181, 320))


def test_feed_that_is_not_a_video(tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("this is not a video\n" * 50)
    _expect_error(tmp_path, r"not a video.*notes\.txt", feeds=[txt])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    _expect_error(tmp_path, r"not a readable media file.*junk\.mp4", feeds=[junk])
    wav = _write_wav(tmp_path / "voice.wav")
    _expect_error(tmp_path, r"no video stream.*voice\.wav", feeds=[wav])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _expect_error(tmp_path, r"empty.*empty\.mp4", feeds=[empty])


def test_other_bad_arguments(tmp_path: Path) -> None:
    _expect_error(tmp_path, "unknown generated source 'nonsense'", feeds=["gen:nonsense"])
    _expect_error(tmp_path, "takes 2 to 3 feeds, got 1", layout="vertical", feeds=["gen:solid"])
    _expect_error(tmp_path, "audio: no such file", audio=str(tmp_path / "nothing.wav"))
    _expect_error(tmp_path, "gap must be an even", layout="vertical", gap=3)
    with pytest.raises(CompositeError, match="unsupported output extension '.gif'"):
        make_single(tmp_path / "x.gif", canvas=P, duration=1)
    no_leftovers(tmp_path, "x.gif")


def test_ffmpeg_failure_reports_stderr_and_keeps_old_output(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    out.write_bytes(b"previous version")
    # Passes our checks (looks like a colour name) but ffmpeg rejects it.
    with pytest.raises(CompositeError) as ei:
        make_composite(out, "vertical", canvas=P, duration=1.0, gap=4, gap_color="notacolour")
    msg = str(ei.value)
    assert "ffmpeg failed" in msg and str(out) in msg and "notacolour" in msg
    assert out.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


# --------------------------------------------------------------------- demo


def _check_demo(out_dir: Path, entries: list[dict]) -> None:
    assert json.loads((out_dir / "manifest.json").read_text()) == entries
    history = [e for e in entries if e["split"] == "history"]
    new = [e for e in entries if e["split"] == "new"]
    assert len(history) == 8 and len(new) == 2
    assert {e["layout"] for e in history} == {"single", "vertical", "horizontal", "pip", "grid"}
    assert {Path(e["path"]).name for e in new} == {"composite.mp4", "single.mp4"}
    assert all(Path(e["path"]).parent == out_dir / "history" for e in history)
    shapes = set()
    for e in entries:
        d = Decoded(Path(e["path"]))
        assert [d.width, d.height] == e["canvas"]
        assert d.duration == pytest.approx(e["duration"], abs=0.2)
        assert d.has_audio
        shapes.add("portrait" if d.height > d.width else "landscape")
        assert set(e) >= {"path", "layout", "feeds", "audio", "canvas", "duration", "split"}
    assert shapes == {"portrait", "landscape"}
    comp = next(e for e in new if e["layout"] == "vertical")
    assert comp["shares_feeds_with"] and comp["feeds"] not in [h["feeds"] for h in history]
    single = next(e for e in new if e["layout"] == "single")
    assert single["shares_feeds_with"] == []


def test_demo_set_generated(tmp_path: Path) -> None:
    entries = make_demo_set(
        tmp_path / "demo",
        media_dir=tmp_path / "no-media-here",
        seed=1,
        short_side=128,
        duration=1.5,
        preset="ultrafast",
    )
    _check_demo(tmp_path / "demo", entries)
    assert all(f.startswith("gen:") for e in entries for f in e["feeds"])


@needs_media
def test_demo_set_from_shared_media(tmp_path: Path) -> None:
    entries = make_demo_set(
        tmp_path / "demo", media_dir=MEDIA, seed=0, short_side=128, duration=1.5, preset="ultrafast"
    )
    _check_demo(tmp_path / "demo", entries)
    assert all(Path(f.split("#t=")[0]).is_file() for e in entries for f in e["feeds"])
    assert any(Path(str(e["audio"])).is_file() for e in entries)
