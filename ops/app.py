"""Builds the parts a command needs from settings, once, and only when asked.

Models are slow to load, so each is built on first use and shared by every
step of the command; stores are opened with the encoder's model id so that a
store of another model refuses the run before anything is written.
"""

from __future__ import annotations

import sys
from functools import cached_property

from rich.console import Console

from indexer.encoders.base import Encoder
from indexer.pipeline import Limits, VideoIndexer
from indexer.sampling import Sampler, parse_sampler
from ops.config import Settings
from search.bank import ExemplarBank
from search.factory import open_bank, open_history
from search.generations import ORIGINAL, Generation
from search.history import FrameHistory

err_console = Console(stderr=True, highlight=False)


def _say_if_random(enc: Encoder) -> None:
    """Every command that loads a model with random weights says so, once, before it answers."""
    if enc.random_weights:
        err_console.print(f"[bold yellow]note:[/] {enc.random_weights_note()}")


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stores: list = []

    # -- models -------------------------------------------------------------------

    @cached_property
    def encoder(self) -> Encoder:
        from indexer.encoders.factory import create_encoder

        s = self.encoder_settings
        return create_encoder(s, openvino_cache=s.openvino_cache or self.settings.data_dir / "openvino",
                              limits=self.limits, status=err_console.status, on_loaded=_say_if_random)

    @cached_property
    def registry(self):
        """The history's generations (search/generations.py), read once per command: None if never migrated."""
        from search.factory import read_registry

        url = self.settings.es_url.get_secret_value() if self.settings.es_url is not None else None
        return read_registry(es_url=url, elastic=self.settings.elastic, history_dir=self.settings.history_dir,
                             outbox_dir=self.settings.data_dir / "outbox")

    @cached_property
    def encoder_settings(self):
        """The configured encoder, or the one the stores were migrated to (``sludge migrate``).

        A switch moves every reader to the new model at once: where the configuration does not name a
        model or weights itself, the encoder follows the history's active generation.
        """
        s = self.settings.encoder
        if {"model", "pretrained"} & s.model_fields_set:
            return s
        reg = self.registry
        spec = reg.active.encoder if reg is not None else None
        if not spec or (spec.get("model"), spec.get("pretrained")) == (s.model, s.pretrained):
            return s
        err_console.print(f"[dim]encoder: {spec.get('model')} {spec.get('pretrained')} (the stores were migrated "
                          "to it; set encoder.model and encoder.pretrained to choose another)[/]")
        return s.model_copy(update=spec)

    @cached_property
    def classifier(self):
        """The confirm model (Visual-Qwen), loaded on first use: an export or a trained folder."""
        from classifier.load import load_model
        from classifier.prompt import QUESTIONS

        s = self.settings.classifier
        with err_console.status(f"loading classifier {s.model} …"):
            model = load_model(s.model, device=s.device, question=QUESTIONS[s.question],
                               max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, unparseable=s.unparseable)
        if model.random_weights:
            err_console.print(f"[bold yellow]note:[/] classifier {model.describe()}: answers show the machinery "
                              "working, not a real judgement.")
        return model

    @cached_property
    def cascade(self):
        """Stage one (bank, PDQ, layout, transcript) → stage two (the classifier) in the uncertainty band."""
        from classifier.cascade import Cascade

        s = self.settings.classifier
        return Cascade(lambda: self.classifier, sampler=self.sampler(s.sampler), limits=self.limits,
                       band=(s.band_low, s.band_high), confirm_on_layout=s.confirm_on_layout,
                       transcript_terms=tuple(s.transcript_terms),
                       transcriber=(lambda: self.transcriber) if s.use_transcript else None)

    @cached_property
    def transcriber(self):
        s = self.settings.transcriber
        if not s.enabled:
            return None
        from indexer.transcribe import load_transcriber

        transcriber = load_transcriber(
            s.backend,
            s.model,
            language=s.language,
            device=s.device,
            compute_type=s.compute_type,
            beam_size=s.beam_size,
            chunk_seconds=s.chunk_seconds,
            threads=s.threads,
        )
        with err_console.status(f"loading transcriber {s.model} …"):
            transcriber.load()  # a missing model fails the command once, not every file
        return transcriber

    def sampler(self, spec: str | None = None) -> Sampler:
        return parse_sampler(spec or self.settings.index.sampler)

    @property
    def limits(self) -> Limits:
        s = self.settings.index
        return Limits(max_side=s.max_side, max_file_bytes=s.max_file_bytes, max_duration_s=s.max_duration_s)

    def indexer(self, sampler: str | None = None, transcribe: bool = True, layout: bool = True) -> VideoIndexer:
        return VideoIndexer(
            lambda: self.encoder,  # loaded when the first file has decoded
            self.sampler(sampler),
            self.transcriber if transcribe else None,
            self.limits,
            layout=layout,
            thumbs_dir=self.settings.thumbs_dir if self.settings.index.thumbnails else None,
        )

    # -- stores --------------------------------------------------------------------

    def bank(self, *, with_encoder: bool = True) -> ExemplarBank:
        """The exemplar bank; ``with_encoder`` pins it to the encoder (loading it)."""
        model_id, dim = (self.encoder.model_id, self.encoder.dim) if with_encoder else (None, None)
        url = self.settings.redis_url.get_secret_value() if self.settings.redis_url is not None else None
        bank = open_bank(redis_url=url, redis=self.settings.redis, bank_dir=self.settings.bank_dir,
                         model_id=model_id, dim=dim)
        self._stores.append(bank)
        return bank

    def history(self, *, with_encoder: bool = True) -> FrameHistory:
        model_id, dim = (self.encoder.model_id, self.encoder.dim) if with_encoder else (None, None)
        url = self.settings.es_url.get_secret_value() if self.settings.es_url is not None else None
        reg = self.registry
        gen = reg.generation_for(model_id) if reg is not None else Generation(ORIGINAL, None, None)
        hist = open_history(es_url=url, elastic=self.settings.elastic, history_dir=self.settings.history_dir,
                            outbox_dir=self.settings.data_dir / "outbox", model_id=model_id, dim=dim, generation=gen)
        self._stores.append(hist)
        return hist

    def close(self) -> None:
        for store in self._stores:
            try:
                store.close()
            except Exception as e:  # closing must not hide the command's own outcome
                print(f"warning: closing {store.__class__.__name__}: {e}", file=sys.stderr)
        self._stores.clear()
