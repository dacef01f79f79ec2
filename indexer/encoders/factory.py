"""Which encoder a configuration names, built: the one place that maps settings to an encoder class.

Beside the encoders (as open_clip's ``factory.py`` is beside its models) so that every caller (the
application, benchmarks, training scripts) builds them the same way. The settings object is duck-typed
(``ops.config.EncoderSettings`` in the application): ``indexer`` does not import ``ops``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from indexer.encoders.base import Encoder

Status = Callable[[str], AbstractContextManager]
OPENVINO_PRECISION = {"openvino": "fp32", "openvino-fp16": "fp16", "openvino-int8": "int8"}


def _quiet(message: str) -> AbstractContextManager:
    return nullcontext()


def create_encoder(s: Any, *, openvino_cache: Path, limits: Any = None, status: Status = _quiet,
                   on_loaded: Callable[[Encoder], None] | None = None) -> Encoder:
    """The encoder ``s`` names (backend, model, weights, runtime).

    ``status(message)`` wraps each slow step (a spinner in the CLI); ``on_loaded`` sees the model before
    any runtime conversion (the CLI says there when the weights are random); ``openvino_cache`` is where
    converted OpenVINO models are kept; ``limits`` bound the calibration videos' decoding (INT8).
    """
    if s.backend == "qformer":
        from indexer.encoders.qformer import QFormerEncoder

        with status(f"loading encoder {s.qformer_model} (Q-Former ITC) …"):
            qenc = QFormerEncoder(s.qformer_model, tokenizer=s.qformer_tokenizer, pooling=s.qformer_pooling,
                                  device=s.device, batch_size=s.batch_size, seed=s.seed, threads=s.threads)
        if on_loaded is not None:
            on_loaded(qenc)
        return qenc
    from indexer.encoders.openclip import OpenClipEncoder

    with status(f"loading encoder {s.model} …"):
        enc = OpenClipEncoder(s.model, s.pretrained, random_weights=s.random_weights,
                              on_missing_weights=s.on_missing_weights, seed=s.seed,
                              image_resize_mode=s.image_resize_mode, batch_size=s.batch_size,
                              threads=s.threads, device=s.device)
    if on_loaded is not None:
        on_loaded(enc)
    if s.runtime == "torch":
        return enc
    return openvino_encoder(enc, s, cache_dir=openvino_cache, limits=limits, status=status)


def openvino_encoder(base: Encoder, s: Any, *, cache_dir: Path, limits: Any = None,
                     status: Status = _quiet) -> Encoder:
    """The same model on OpenVINO; INT8 calibrates on frames of ``s.calibration_videos``."""
    from indexer.encoders.openvino import OpenVinoClipEncoder

    precision = OPENVINO_PRECISION[s.runtime]
    calibration = None
    if precision == "int8":
        from indexer.pipeline import Limits, sample_video
        from indexer.sampling import UniformSampler

        calibration = [f.image for v in s.calibration_videos
                       for f in sample_video(v, UniformSampler(8), limits or Limits()).frames]
    with status(f"preparing OpenVINO {precision.upper()} model (first run converts it) …"):
        return OpenVinoClipEncoder(base, precision=precision, cache_dir=cache_dir,
                                   calibration_images=calibration, threads=s.threads, batch_size=s.batch_size)
