"""Configuration: ``SLUDGE_*`` environment variables over an optional TOML file.

Precedence, highest first: explicit overrides (CLI flags), environment
variables (``SLUDGE_DATA_DIR``, nested with ``__``: ``SLUDGE_ENCODER__MODEL``),
the TOML file named by ``SLUDGE_CONFIG`` (else ``./sludge.toml`` when present),
then the defaults below. ``sludge config show`` prints the result with secrets
masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from indexer.errors import ConfigError, SamplerSpecError
from indexer.sampling import parse_sampler

DEFAULT_CONFIG_FILE = Path("sludge.toml")


def _check_sampler(v: str) -> str:
    try:
        parse_sampler(v)
    except SamplerSpecError as e:
        raise ValueError(str(e)) from None  # pydantic then names the setting
    return v


SamplerSpec = Annotated[str, AfterValidator(_check_sampler)]


class Section(BaseModel):
    """A table of settings; unknown keys are errors, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class EncoderSettings(Section):
    backend: Literal["open_clip", "qformer"] = Field(
        "open_clip",
        description="'open_clip' (CLIP family) or 'qformer' (BLIP-2 image-text contrastive space, 256-d)",
    )
    model: str = "ViT-B-32"
    pretrained: str = Field(
        "laion2b_s34b_b79k",
        description="open_clip pretrained tag, or a path to a local checkpoint file",
    )
    random_weights: bool = Field(
        False,
        description="offline/test mode: build the architecture with seeded random weights",
    )
    on_missing_weights: Literal["error", "random"] = Field(
        "error",
        description="'random' lets a demo fall back (loudly) when weights cannot be fetched",
    )
    seed: int = 0
    image_resize_mode: Literal["longest", "shortest", "squash"] = Field(
        "longest",
        description="'longest' pads to a square so every feed of a stacked frame stays in view",
    )
    batch_size: int = Field(16, ge=1, le=1024)
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default")
    device: str = "cpu"
    runtime: Literal["torch", "openvino", "openvino-fp16", "openvino-int8"] = Field(
        "torch",
        description="open_clip runtime: PyTorch eager, or OpenVINO FP32/FP16/INT8 (same embedding space)",
    )
    openvino_cache: Path | None = Field(
        None, description="converted OpenVINO models (default: $SLUDGE_DATA_DIR/openvino)"
    )
    calibration_videos: list[Path] = Field(
        default_factory=list,
        description="runtime openvino-int8: videos whose frames calibrate the quantization",
    )
    qformer_model: str = Field(
        "Salesforce/blip2-itm-vit-g",
        description="backend 'qformer': BLIP-2 checkpoint with ITC heads (id or folder); 'tiny' = random dev model",
    )
    qformer_tokenizer: str | None = Field(None, description="backend 'qformer': tokenizer (default: the model's)")
    qformer_pooling: str = Field(
        "mean", description="backend 'qformer': 32 query embeddings → one vector: 'mean' or 'query:K'"
    )

    @field_validator("qformer_pooling")
    @classmethod
    def _check_pooling(cls, v: str) -> str:
        from indexer.encoders.qformer import parse_pooling

        try:
            parse_pooling(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v


class ClassifierSettings(Section):
    """The confirm stage (Visual-Qwen) and the cascade around it."""

    model: str = Field(
        "alpharomercoma/vqwen-qformer-tiktok-v2",
        description="single-model export (id or folder) or a folder from `sludge classifier train`",
    )
    device: str = Field("auto", description="'auto': CUDA with bf16 where present, else CPU float32")
    sampler: SamplerSpec = Field("uniform:4", description="frames per video for classify/confirm (the card: 4)")
    question: Literal["eval", "demo"] = Field("eval", description="the evaluation question or the demo app's")
    max_new_tokens: int = Field(8, ge=1, le=64, description="greedy answer length (the card: 6 to 8)")
    batch_size: int = Field(8, ge=1, le=256, description="frames per forward pass")
    unparseable: Literal["drop", "no"] = Field("drop", description="unparseable frames: dropped from the vote or 'no'")
    use_transcript: bool = Field(True, description="put the Whisper transcript in the prompt (v2)")
    band_low: float = Field(-0.05, ge=-2.0, le=2.0,
                            description="cascade: bank margin (score - threshold) below which stage one clears")
    band_high: float = Field(0.10, ge=-2.0, le=2.0,
                             description="cascade: bank margin at or above which stage one flags without the model")
    confirm_on_layout: bool = Field(True, description="cascade: a multi-feed layout sends a video to stage two")
    transcript_terms: list[str] = Field(default_factory=list,
                                        description="cascade: transcript words that send a video to stage two")


class TranscriberSettings(Section):
    enabled: bool = True
    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    model: str = Field("base", description="model name (e.g. tiny.en, base) or a local path")
    language: str | None = Field(None, description="ISO code; None detects it")
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(1, ge=1)
    chunk_seconds: float = Field(600.0, gt=0, description="audio decoded and transcribed per chunk")
    threads: int = Field(0, ge=0)


class IndexSettings(Section):
    sampler: SamplerSpec = "uniform:4"
    max_side: int = Field(1280, ge=64, description="frames are downscaled to this longest side")
    max_file_bytes: int = Field(4 * 1024**3, ge=1)
    max_duration_s: float = Field(3 * 3600.0, gt=0)
    thumbnails: bool = Field(True, description="write a small JPEG per sampled frame for the reviewer console")
    overlap: bool = Field(
        True, description="overlap decoding, encoding, transcription and storage across videos (False: one by one)"
    )
    decode_threads: int = Field(2, ge=1, le=64, description="overlapped ingest: threads decoding and sampling")
    transcribe_threads: int = Field(1, ge=1, le=64, description="overlapped ingest: threads running Whisper")
    queue_size: int = Field(4, ge=1, le=1024, description="overlapped ingest: videos waiting between two stages")


class BankSettings(Section):
    default_threshold: float = Field(0.25, ge=-1.0, le=1.0)
    k: int = Field(10, ge=1, le=1000, description="exemplars retrieved per frame")


class RecallSettings(Section):
    limit: int = Field(20, ge=1)
    frames_per_video: int = Field(8, ge=1, description="frames fetched per wanted video before grouping")
    snippet_chars: int = Field(160, ge=0)
    max_query_chars: int = Field(1000, ge=1)
    engine: Literal["store", "faiss", "faiss-ivf"] = Field(
        "store", description="'store': the history's own search; 'faiss' / 'faiss-ivf': exported embeddings in "
                             "an exact / IVF faiss index (on GPU where faiss-gpu sees one)"
    )
    faiss_nlist: int = Field(0, ge=0, description="faiss-ivf: inverted lists (0: about 4·sqrt(frames))")
    faiss_nprobe: int = Field(16, ge=1, description="faiss-ivf: lists visited per query")
    faiss_gpu: bool = Field(True, description="faiss: use every GPU faiss sees (faiss-gpu); False keeps it on CPU")


class RedisSettings(Section):
    """The exemplar bank on Redis (used when ``redis_url`` is set)."""

    index_name: str = Field("sludge-bank", description="alias the bank is queried through")
    key_prefix: str = "sludge:bank"
    hnsw_m: int = Field(16, ge=2, le=512)
    hnsw_ef_construction: int = Field(200, ge=4, le=4096)
    hnsw_ef_runtime: int = Field(64, ge=1, le=4096)
    socket_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=20)


class ElasticSettings(Section):
    """The frame history on Elasticsearch (used when ``es_url`` is set)."""

    index_prefix: str = "sludge-frames"
    index_type: Literal["int8_hnsw", "hnsw"] = Field(
        "int8_hnsw", description="HNSW over int8-quantized vectors (4x less memory) or over the float vectors "
                                 "(better recall after large merges; see README)")
    hnsw_m: int = Field(16, ge=2, le=512)
    hnsw_ef_construction: int = Field(100, ge=4, le=4096)
    num_candidates: int = Field(100, ge=1, le=10000)
    rescore_oversample: float = Field(
        3.0, ge=0.0, le=100.0,
        description="kNN takes k × this many approximate hits (up to num_candidates) and re-ranks them by exact "
                    "cosine on the stored float vectors (int8 quantization blurs close neighbours); 0: off",
    )
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    rollover_max_docs: int = Field(10_000_000, ge=1)
    rollover_max_age: str = "30d"
    bulk_chunk: int = Field(500, ge=1)
    bulk_threads: int = Field(
        2, ge=1, le=32,
        description="bulk requests in flight at once (1: one synchronous stream; 2 keeps the client and the "
                    "server both busy on a 2-core machine)")
    request_timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(5, ge=0, le=50)


class ApiSettings(Section):
    """``sludge serve``: the ingest API (HTTP in)."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 only behind a proxy or in a container)")
    port: int = Field(8080, ge=1, le=65535)
    ingest_roots: list[Path] = Field(
        default_factory=list, description="folders whose files may be submitted by `path` (none: path ingest is off)"
    )
    upload_dir: Path | None = Field(
        None, description="where uploads and fetched URLs are kept (default $SLUDGE_DATA_DIR/uploads; shared by workers)"
    )
    max_body_bytes: int = Field(512 * 1024**2, ge=1024, description="largest request body (uploads included)")
    url_max_bytes: int = Field(512 * 1024**2, ge=1024, description="largest video fetched from a `url`")
    url_timeout_s: float = Field(60.0, gt=0, description="time limit for fetching a `url`, all of it")
    url_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs a `url` may point into although private/loopback/link-local (e.g. 10.1.0.0/16)",
    )
    body_idle_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a request body that sends nothing for this long is cut off (408)")
    rate_limit: str = Field("600/minute", description="per API key, kept in Redis ('N/second|minute|hour')")
    idempotency_ttl_s: int = Field(86400, ge=60, description="how long an Idempotency-Key is remembered")

    @field_validator("url_allow")
    @classmethod
    def _check_cidrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise ValueError(f"{c!r} is not an IP network (CIDR)") from None
        return v

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, v: str) -> str:
        try:
            from limits import parse
        except ImportError:
            raise ValueError("setting a rate limit needs the 'serve' extra (pip install 'sludge[serve]')") from None
        try:
            parse(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a rate like '600/minute'") from None
        return v


class HooksSettings(Section):
    """Jobs on a Redis Stream, the workers that decide them, and the webhooks they send."""

    key_prefix: str = Field("sludge:hooks", description="Redis keys of jobs, API keys, subscriptions, deliveries")
    group: str = Field("sludge-workers", description="the workers' consumer group")
    claim_idle_s: float = Field(60.0, gt=0, description="a job unacknowledged this long is taken over (XAUTOCLAIM)")
    max_attempts: int = Field(3, ge=1, le=100, description="deliveries of a job before it goes to the dead letters")
    block_ms: int = Field(2000, ge=10, le=60000, description="how long a worker waits on the stream per read")
    confirm: bool = Field(False, description="run the cascade's confirm stage (Visual-Qwen) in the workers")
    sampler: SamplerSpec | None = Field(None, description="frame sampler for uploads (default: index.sampler)")
    transcribe: bool = Field(True, description="transcribe uploads (Whisper) before deciding")
    webhook_timeout_s: float = Field(10.0, gt=0, description="per delivery attempt")
    webhook_max_attempts: int = Field(12, ge=1, le=100, description="attempts before a delivery is dead")
    webhook_backoff_s: float = Field(2.0, gt=0, description="first retry delay; doubles per attempt, with jitter")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="longest retry delay")
    webhook_lease_s: float = Field(60.0, gt=0, description="a delivery claimed by a crashed worker is retried after")
    webhook_allow_private: bool = Field(
        False, description="let subscriptions point at private/loopback addresses (development and tests)"
    )


class RetentionSettings(Section):
    """How long stored uploads and thumbnails are kept (``sludge retention apply``; workers apply it too)."""

    uploads_max_age_days: float | None = Field(
        30.0, gt=0, description="uploads and fetched videos older than this are deleted (None: kept by age)")
    uploads_max_bytes: int | None = Field(
        None, ge=0, description="the oldest uploads are deleted until the rest fits (None: no size cap)")
    thumbs_max_age_days: float | None = Field(
        None, gt=0, description="thumbnails of videos indexed longer ago are deleted (None: kept)")
    thumbs_max_bytes: int | None = Field(
        None, ge=0, description="the oldest videos' thumbnails are deleted until the rest fits (None: no cap)")
    interval_s: float = Field(3600.0, gt=0, description="how often a worker applies retention (0 workers: never)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLUDGE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(Path(".data"), description="where the embedded stores live")
    redis_url: SecretStr | None = None
    es_url: SecretStr | None = None
    encoder: EncoderSettings = EncoderSettings()
    transcriber: TranscriberSettings = TranscriberSettings()
    index: IndexSettings = IndexSettings()
    bank: BankSettings = BankSettings()
    recall: RecallSettings = RecallSettings()
    redis: RedisSettings = RedisSettings()
    elastic: ElasticSettings = ElasticSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    api: ApiSettings = ApiSettings()
    hooks: HooksSettings = HooksSettings()
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = config_file()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def bank_dir(self) -> Path:
        return self.data_dir / "bank"

    @property
    def history_dir(self) -> Path:
        return self.data_dir / "history"

    @property
    def exemplars_dir(self) -> Path:
        """Copies of exemplar pictures, one folder per content hash (the bank re-embeds them on a migration)."""
        return self.data_dir / "exemplars"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def uploads_dir(self) -> Path:
        """Where uploads and fetched videos are kept (shared by the API and the workers)."""
        return self.api.upload_dir or self.data_dir / "uploads"


def config_file() -> Path | None:
    """The TOML file in effect: ``SLUDGE_CONFIG`` if set (must exist), else ./sludge.toml if present."""
    named = os.environ.get("SLUDGE_CONFIG")
    if named:
        p = Path(named)
        if not p.is_file():
            raise ConfigError(f"SLUDGE_CONFIG names {p}, which is not a file")
        return p
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's validation errors into one readable ConfigError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            ctx = err.get("ctx", {}) or {}
            cause = ctx.get("error")
            msg = str(cause) if isinstance(cause, Exception) else err["msg"]
            problems.append(f"{loc}: {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def mask_url(url: str) -> str:
    """Hide the password of a URL but keep the host visible, so an operator can tell where it points."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


def effective_config(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with secrets masked, for display."""
    data = settings.model_dump(mode="json")
    for key in ("redis_url", "es_url"):
        secret = getattr(settings, key)
        data[key] = mask_url(secret.get_secret_value()) if secret is not None else None
    data["config_file"] = str(config_file()) if config_file() else None
    return data
