"""Decoding: every real file decodes or fails with a typed error; edge cases of real uploads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import SHARED_MEDIA, ffmpeg, media
from indexer.errors import EmptyFileError, MediaError, MediaTooLargeError, NotAVideoError
from indexer.sampling import parse_sampler
from indexer.video import VideoReader

VIDEO_FILES = sorted((SHARED_MEDIA / "video").glob("*/*")) if SHARED_MEDIA.is_dir() else []


@pytest.mark.media
@pytest.mark.parametrize("path", VIDEO_FILES, ids=lambda p: p.name)
def test_every_shared_video_decodes_or_fails_typed(path):
    try:
        with VideoReader(path) as r:
            frames = parse_sampler("uniform:4").sample(r)
            info = r.info
    except MediaError as e:
        assert path.name in str(e)
        return
    assert info.duration > 0
    assert 1 <= len(frames) <= 4
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert max(f.image.shape[:2]) <= 1280
        assert 0 <= f.ts <= info.duration + 0.1
        # upright: the frame's orientation agrees with the displayed size
        assert (f.image.shape[1] >= f.image.shape[0]) == (info.width >= info.height)
    assert [f.ts for f in frames] == sorted(f.ts for f in frames)


def test_shared_media_present_for_ci():
    if not SHARED_MEDIA.is_dir():
        pytest.skip("no ../shared/media on this machine")
    assert len(VIDEO_FILES) > 40


@pytest.mark.parametrize("name", ["dmlc-decord__video_90.mov", "dmlc-decord__video_270.mov",
                                  "dmlc-decord__video_180.mov", "Zulko-moviepy__fire2.mp4"])
def test_rotation_matches_ffmpeg_autorotate(tmp_path, name):
    path = media(f"video/real/{name}")
    raw = tmp_path / "f.rgb"
    ffmpeg("-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw))
    with VideoReader(path, max_side=None) as r:
        img = r.frames_at([0.0])[0].image
        assert (r.info.width, r.info.height) == (img.shape[1], img.shape[0])
    ref = np.fromfile(raw, dtype=np.uint8)
    assert ref.size == img.size
    assert np.abs(ref.reshape(img.shape).astype(int) - img).mean() < 1.0


def test_missing_duration_is_found_by_scanning():
    with VideoReader(media("video/synthetic/Zulko-moviepy__no_duration.webm")) as r:
        assert r.info.duration_source == "scan"
        assert 4.0 < r.info.duration < 6.0
        assert len(parse_sampler("uniform:4").sample(r)) == 4


def test_corrupt_file_keeps_decodable_frames_and_warns():
    path = media("video/synthetic/dmlc-decord__corrupted.mp4")
    with VideoReader(path) as r:
        frames = parse_sampler("uniform:8").sample(r)
        assert frames and r.log.warnings and "decoding stopped" in r.log.warnings[0]


def test_variable_frame_rate_picks_by_time(tmp_path):
    # 10 frames at 0.0-0.9 s (10 fps), then 5 frames at 1, 2, 3, 4, 5 s: VFR via setpts.
    out = tmp_path / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1.5",
           "-vf", "setpts='if(lt(N,10),N/10,(N-9))/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "veryfast", str(out))
    with VideoReader(out) as r:
        frames = r.frames_at([0.45, 2.5, 3.0])
    ts = [f.ts for f in frames]
    assert ts[0] == pytest.approx(0.4, abs=1e-3)  # on screen at 0.45 is the frame from 0.4
    assert ts[1] == pytest.approx(2.0, abs=1e-3)
    assert ts[2] == pytest.approx(3.0, abs=1e-3)


def test_times_on_one_frame_give_it_once(clip_a):
    with VideoReader(clip_a) as r:
        frames = r.frames_at([1.0, 1.001, 1.002])
    assert len(frames) == 1


def test_long_gaps_seek_and_stay_exact(tmp_path):
    out = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=40",
           "-c:v", "libx264", "-preset", "veryfast", "-g", "50", str(out))
    with VideoReader(out) as r:
        seek = r.frames_at([5.0, 25.0, 39.0])
    with VideoReader(out) as r:
        dense = dict((round(t, 3), img) for t, img in r.iter_frames() if round(t, 3) in (5.0, 25.0, 39.0))
    assert [f.ts for f in seek] == [5.0, 25.0, 39.0]
    for f in seek:
        assert np.array_equal(f.image, dense[f.ts])


def test_scene_sampler_finds_cuts(tmp_path):
    parts = []
    for i, src in enumerate(["testsrc2", "mandelbrot", "smptehdbars"]):
        p = tmp_path / f"p{i}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"{src}=size=160x120:rate=25", "-t", "2",
               "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(p))
        parts.append(p)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p in parts))
    out = tmp_path / "cuts.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(out))
    with VideoReader(out) as r:
        frames = parse_sampler("scene:0.15,max:10").sample(r)
    ts = [f.ts for f in frames]
    assert ts[0] < 0.2
    assert len(frames) == 3, ts
    assert 2.0 <= ts[1] <= 2.6 and 4.0 <= ts[2] <= 4.6


# -- bad input --------------------------------------------------------------------


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.touch()
    with pytest.raises(EmptyFileError, match="empty.mp4.*0 bytes"):
        VideoReader(p)


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        VideoReader(p)


def test_truncated_mp4(tmp_path, clip_a):
    data = clip_a.read_bytes()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="truncated.mp4"):
        with VideoReader(p) as r:
            parse_sampler("uniform:4").sample(r)


def test_audio_only_file_is_not_a_video():
    with pytest.raises(NotAVideoError, match="no video stream"):
        VideoReader(media("speech/openai-whisper__jfk.flac"))


def test_unreadable_file(tmp_path, clip_a):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    p = tmp_path / "locked.mp4"
    p.write_bytes(clip_a.read_bytes())
    p.chmod(0)
    with pytest.raises(MediaError, match="permission"):
        VideoReader(p)


def test_limits(clip_a):
    with pytest.raises(MediaTooLargeError, match="above the limit"):
        VideoReader(clip_a, max_file_bytes=100)
    with pytest.raises(MediaTooLargeError, match="lasts 3 s"):
        VideoReader(clip_a, max_duration_s=1.0)


def test_directory_is_refused(tmp_path):
    with pytest.raises(MediaError, match="directory"):
        VideoReader(tmp_path)


def test_zero_frame_video(tmp_path):
    # A valid container header with no frames: ffmpeg writes one from an empty selection.
    out = tmp_path / "zero.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=1",
           "-vf", "select=0", "-c:v", "libx264", str(out))
    with pytest.raises(MediaError, match="zero.mp4"):
        with VideoReader(out) as r:
            r.frames_at([0.0])
