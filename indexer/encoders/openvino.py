"""open_clip on OpenVINO: the same model, a faster CPU runtime (FP32, FP16, INT8).

The seed moderation system cut CLIP inference on CPU from 369 ms to 113 ms per
image this way. Conversion starts from the loaded PyTorch model
(``openvino.convert_model``), so whatever open_clip loaded (pretrained tag,
checkpoint file, or seeded random weights in tests) is what runs here. INT8
comes from NNCF post-training quantization calibrated on real frames.

Converted IR files and OpenVINO's compiled blobs are cached on disk, keyed by
model id, precision and OpenVINO version, so only the first start pays for
conversion and quantization.

**Inference precision is set, never left to the CPU.** OpenVINO's CPU plugin
computes in bf16 (or f16) by default wherever the processor has AMX or
AVX512-FP16, and in f32 elsewhere, so the same "FP32" model gave 10 of 10
shared top-10 neighbours with PyTorch on an AMD AVX2 machine and 9 of 10 on
an Intel AMX one. Each runtime therefore names what it computes in
(``INFERENCE_PRECISION_HINT``), and :attr:`OpenVinoClipEncoder.inference_precision`
reads back what the compiled model really uses:

- ``fp32``: f32 weights, f32 arithmetic, on every CPU;
- ``fp16``: f16 weights; f16 arithmetic where the CPU computes f16 natively
  (``OPTIMIZATION_CAPABILITIES`` has FP16: Intel Xeon 4th generation and
  later), f32 elsewhere;
- ``int8``: the image tower's matrix products in int8 (NNCF), every other op
  in f32, on every CPU.

The text tower always runs in f32. The embedding space is the PyTorch
model's (agreement is tested on any CPU: mean cosine ≥ 0.9999 and the same
top-10 for FP32; ≥ 0.995 and 8 of 10 for f16 arithmetic; ≥ 0.99 and 8 of
10 for INT8), so ``model_id`` stays the model's and stores built with either
runtime can be queried with the other; :meth:`describe` names the runtime and
its arithmetic.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from indexer.encoders.base import Encoder, ImageLike, check_texts, l2_normalize, to_pil
from indexer.encoders.openclip import OpenClipEncoder
from indexer.errors import ConfigError, EncoderError

PRECISIONS = ("fp32", "fp16", "int8")


class _ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class _TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def _type_name(t) -> str:
    """OpenVINO's element type as f32 / f16 / bf16."""
    name = str(getattr(t, "get_type_name", lambda: t)())
    return {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(name, name)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


class OpenVinoClipEncoder(Encoder):
    """Wraps a loaded :class:`OpenClipEncoder`; its preprocessing and tokenizer are reused."""

    def __init__(
        self,
        base: OpenClipEncoder,
        *,
        precision: str = "fp32",
        cache_dir: str | Path,
        calibration_images: Sequence[ImageLike] | None = None,
        threads: int = 0,
        batch_size: int | None = None,
        device: str = "CPU",
    ) -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ConfigError(f"unknown OpenVINO precision {precision!r}; expected one of {PRECISIONS}")
        self.base = base
        self.precision = precision
        self.model_id = base.model_id
        self.dim = base.dim
        self.random_weights = base.random_weights
        self.max_text_tokens = base.max_text_tokens
        self.batch_size = batch_size or base.batch_size
        self.count_tokens = base.count_tokens
        self._ov_version = ov.get_version().split("-")[0]
        root = Path(cache_dir) / f"{_safe(self.model_id)}-{precision}-ov{self._ov_version}"
        root.mkdir(parents=True, exist_ok=True)
        # The text tower is never quantized, so INT8 shares the FP32 text IR.
        text_root = root if precision != "int8" else root.with_name(root.name.replace("-int8-", "-fp32-"))
        text_root.mkdir(parents=True, exist_ok=True)
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(root / "compiled")})
        native = core.get_property(device, "OPTIMIZATION_CAPABILITIES") if device == "CPU" else []
        image_math = "f16" if precision == "fp16" and "FP16" in native else "f32"
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": image_math}
        text_config = {**config, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = text_config["INFERENCE_NUM_THREADS"] = threads
        image_ir = root / "image.xml"
        text_ir = text_root / "text.xml"
        try:
            if not image_ir.exists():
                self._convert_image(image_ir, calibration_images)
            if not text_ir.exists():
                self._convert_text(text_ir, fp16=precision == "fp16")
            self._image = core.compile_model(str(image_ir), device, config)
            self._text = core.compile_model(str(text_ir), device, text_config)
            self.inference_precision = _type_name(self._image.get_property("INFERENCE_PRECISION_HINT"))
            self.text_inference_precision = _type_name(self._text.get_property("INFERENCE_PRECISION_HINT"))
        except (RuntimeError, OSError) as e:
            raise EncoderError(f"OpenVINO could not build {self.model_id} at {precision}: {e}") from None
        self._image_requests = threading.local()
        self._text_requests = threading.local()
        self.cache_dir = root

    # -- conversion ----------------------------------------------------------------

    def _size(self) -> int:
        size = getattr(self.base._model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def _convert_image(self, path: Path, calibration: Sequence[ImageLike] | None) -> None:
        import openvino as ov

        s = self._size()
        tower = _ImageTower(self.base._model).eval()
        with torch.inference_mode():
            model = ov.convert_model(tower, example_input=torch.zeros(1, 3, s, s), input=[(-1, 3, s, s)])
        if self.precision == "int8":
            model = self._quantize(model, calibration)
        ov.save_model(model, str(path), compress_to_fp16=self.precision == "fp16")

    def _convert_text(self, path: Path, fp16: bool) -> None:
        import openvino as ov

        ctx = int(self.base.max_text_tokens or 77)
        tower = _TextTower(self.base._model).eval()
        example = self.base._tokenizer(["a photo"])
        with torch.inference_mode():
            model = ov.convert_model(tower, example_input=example, input=[((-1, ctx), ov.Type.i64)])
        # Text is short and cheap; quantizing it buys little and costs agreement.
        ov.save_model(model, str(path), compress_to_fp16=fp16)

    def _quantize(self, model, calibration: Sequence[ImageLike] | None):
        import nncf

        if not calibration:
            raise EncoderError(
                "INT8 needs calibration frames: pass real frames (e.g. sampled from a few videos)"
            )
        batches = [self._pixels([im]) for im in calibration]
        dataset = nncf.Dataset(batches)
        return nncf.quantize(
            model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
            preset=nncf.QuantizationPreset.MIXED,
        )

    # -- inference -------------------------------------------------------------------

    def _pixels(self, images: Sequence[ImageLike]) -> np.ndarray:
        return torch.stack([self.base._preprocess(to_pil(im)) for im in images]).numpy()

    def _request(self, which: str):
        store = self._image_requests if which == "image" else self._text_requests
        req = getattr(store, "req", None)
        if req is None:  # one infer request per thread: requests are not thread-safe
            req = (self._image if which == "image" else self._text).create_infer_request()
            store.req = req
        return req

    def embed_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        req = self._request("image")
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = self._pixels(images[i : i + self.batch_size])
            out.append(np.array(req.infer([pixels])[0], dtype=np.float32))
        return l2_normalize(np.concatenate(out))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        check_texts(texts)
        req = self._request("text")
        out = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.base._tokenizer(list(texts[i : i + self.batch_size])).numpy().astype(np.int64)
            out.append(np.array(req.infer([tokens])[0], dtype=np.float32))
        return l2_normalize(np.concatenate(out))

    def describe(self) -> str:
        return (super().describe() + f" on OpenVINO {self._ov_version} {self.precision.upper()} "
                f"({self.inference_precision} arithmetic)")
