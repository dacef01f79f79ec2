"""Shared fixtures: real media from ../shared/media, generated media, a random-weight encoder.

The encoder here is open_clip ViT-B-32 built from its real config with seeded
RANDOM weights: pretrained weights cannot be downloaded on these machines.
Tests therefore check the machinery (shapes, normalisation, determinism,
ranking of identical content) and never that a text "means" an image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "media"

# Keep the whole test run offline and quiet: hubs are unreachable here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def media(rel: str) -> Path:
    """A file under ../shared/media, or skip the test with the reason."""
    p = SHARED_MEDIA / rel
    if not p.exists():
        pytest.skip(f"shared media not present: {p}")
    return p


@pytest.fixture(scope="session")
def shared_media() -> Path:
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"shared media folder not present: {SHARED_MEDIA}")
    return SHARED_MEDIA


def ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make test installs it)")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def encoder():
    from indexer.encoders.openclip import OpenClipEncoder

    return OpenClipEncoder("ViT-B-32", None, random_weights=True, seed=0, batch_size=16)


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="session")
def clip_a(gen_dir) -> Path:
    """A 3 s generated clip with a tone (test pattern)."""
    out = gen_dir / "a.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out))
    return out


@pytest.fixture(scope="session")
def clip_b(gen_dir) -> Path:
    """A 4 s generated clip with no audio stream (mandelbrot zoom)."""
    out = gen_dir / "b.mkv"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=320x240:rate=25", "-t", "4",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(out))
    return out


# Server fixtures (real Redis / Elasticsearch started for the session) live in their own modules.
@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Path:
    """A clean configuration for in-process CLI runs: no SLUDGE_* from outside, the embedded stores
    under tmp_path (also the working directory), the encoder with seeded random weights (no hub here)."""
    for k in list(os.environ):
        if k.startswith("SLUDGE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLUDGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLUDGE_ENCODER__RANDOM_WEIGHTS", "true")
    return tmp_path


from fixtures_redis import *  # noqa: E402,F401,F403
from fixtures_es import *  # noqa: E402,F401,F403
