"""The API's request and response models, path and query types, and shared OpenAPI fragments.

Apart from the routes (``ops/hooks/api.py``) so that the contract reads in one place: what each
operation accepts (every limit a schema can state) and answers.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from fastapi import Header, Path
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from indexer.encoders.base import CONTENT_PATTERN
from search.exemplars import MAX_NOTE_CHARS, MAX_TEXT_CHARS
from search.history import EARLIEST_TIME, LATEST_TIME
from search.types import MAX_DESCRIPTION_CHARS, MAX_RULE_K, POLICY_NAME_PATTERN

SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
#: The multipart upload's parts; any other part is refused.
FORM_FIELDS = ("file", "source", "meta")
MAX_SOURCE_CHARS = 200
MAX_META_BYTES = 16 * 1024
MAX_META_DEPTH = 8
#: The longest query the schema admits; ``recall.max_query_chars`` may lower it.
MAX_QUERY_CHARS = 1000
#: The console: no framing, no third-party anything.
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
RULE_PATTERN = rf"^(best|k_of_n:([1-9][0-9]{{0,{len(str(MAX_RULE_K)) - 2}}}|{MAX_RULE_K}))$"


# -- request and response bodies (they make the OpenAPI document) ----------------------------

class Strict(BaseModel):
    """No unknown fields, no coercion (``{"threshold": false}`` is not 0.0)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def check_meta(meta: Any) -> dict[str, Any]:
    """Bounded ``meta``: it is copied into every job read and every webhook body."""
    if not isinstance(meta, dict):
        raise ValueError("`meta` must be a JSON object")
    size = len(json.dumps(meta, separators=(",", ":")))
    if size > MAX_META_BYTES:
        raise ValueError(f"`meta` is {size} bytes of JSON; at most {MAX_META_BYTES} are allowed")

    def depth(x: Any) -> int:
        if isinstance(x, dict):
            return 1 + max((depth(v) for v in x.values()), default=0)
        if isinstance(x, list):
            return 1 + max((depth(v) for v in x), default=0)
        return 0
    if depth(meta) > MAX_META_DEPTH:
        raise ValueError(f"`meta` is nested more than {MAX_META_DEPTH} deep")
    return meta


Meta = Annotated[dict[str, Any], Field(description=f"echoed back in the decision and webhooks; at most "
                                       f"{MAX_META_BYTES} bytes of JSON, nested at most {MAX_META_DEPTH} deep",
                                       json_schema_extra={"maxProperties": 64})]


class VideoByReference(Strict):
    """A video the worker fetches (``url``) or reads (``path``): exactly one of the two."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "oneOf": [{"required": ["url"], "not": {"required": ["path"]}},
                  {"required": ["path"], "not": {"required": ["url"]}}]})

    # The patterns are checked by the validators below, which say what is wrong in words.
    url: str | None = Field(None, min_length=8, max_length=4096,
                            json_schema_extra={"pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://"},
                            description="http(s) URL the worker fetches; its host must resolve to public "
                                        "addresses only (else 422 `bad_source`)")
    path: str | None = Field(None, min_length=2, max_length=4096, json_schema_extra={"pattern": r"^/"},
                             description="absolute path of a file under one of the server's ingest roots "
                                         "(else 422 `bad_source`)")

    @field_validator("url")
    @classmethod
    def _http_only(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v, re.IGNORECASE):
            scheme = v.split(":", 1)[0] if ":" in v else ""
            raise ValueError(f"url scheme {scheme or '(none)'!r} is not allowed: only http and https")
        return v

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"path {v!r} must be absolute")
        return v
    source: str | None = Field(None, max_length=MAX_SOURCE_CHARS,
                               description="channel or upload source, kept with the video")
    meta: Meta = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "VideoByReference":
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` or `path` (or upload the file as multipart `file`)")
        check_meta(self.meta)
        return self


class JobAccepted(BaseModel):
    id: str
    state: str
    status_url: str
    replayed: bool = Field(False, description="true when an earlier request with this Idempotency-Key made it")


class JobView(BaseModel):
    id: str
    state: Literal["queued", "processing", "decided", "failed"]
    source: dict[str, Any]
    created_at: float
    updated_at: float
    attempts: int
    video_id: str | None
    decision: dict[str, Any] | None = Field(None, description="decision, reason, stage, policies with their "
                                            "bank matches and scores, layout, transcript snippet, confirm votes")
    error: str | None
    meta: dict[str, Any]


PolicyName = Annotated[str, Path(pattern=POLICY_NAME_PATTERN, description="the policy's name")]
ExemplarId = Annotated[str, Path(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$",
                                 description="an exemplar id, or a unique prefix of 4 or more characters")]
JobId = Annotated[str, Path(max_length=64, description="the id `POST /v1/videos` answered")]
Time = Annotated[float, Field(ge=EARLIEST_TIME, le=LATEST_TIME, allow_inf_nan=False,
                              description="epoch seconds, 1970 to the end of year 9999")]
Tag = Annotated[str, Field(min_length=1, max_length=200)]


class RecallRequest(Strict):
    query: str = Field(..., min_length=1, max_length=MAX_QUERY_CHARS, pattern=CONTENT_PATTERN,
                       description="what to look for, in words (at most recall.max_query_chars characters, "
                                   "some not white space)")
    limit: int = Field(20, ge=1, le=500)
    min_score: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False)
    since: Time | None = None
    until: Time | None = None
    layouts: list[Tag] = Field(default_factory=list, max_length=20)
    sources: list[Tag] = Field(default_factory=list, max_length=100)
    decisions: list[Tag] = Field(default_factory=list, max_length=20)
    transcript: str | None = Field(None, min_length=1, max_length=1000, pattern=r"\w",
                                   description="only videos whose transcript holds every word")


class RecallView(BaseModel):
    query: str
    model_id: str
    random_weights: bool
    results: list[dict[str, Any]]


class PolicyBody(Strict):
    threshold: float = Field(..., ge=-1, le=1, allow_inf_nan=False)
    rule: str = Field("best", pattern=RULE_PATTERN, description=f"'best', or 'k_of_n:K' with 1 ≤ K ≤ {MAX_RULE_K}")
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS)


class TextExemplarBody(Strict):
    policy: str = Field(..., pattern=POLICY_NAME_PATTERN)
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, pattern=CONTENT_PATTERN,
                      description="a description of what the policy targets; refused (422) when longer than "
                                  "the encoder reads (77 tokens for CLIP)")
    note: str = Field("", max_length=MAX_NOTE_CHARS)
    threshold: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False,
                                    description="for a new policy (default bank.default_threshold)")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation documents: those named, those any request may get."""
    out: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (400, 408, 413, 500, *codes)}
    out["default"] = {"model": ErrorBody, "description": "any other error, in the same shape"}
    return out


KEYED = (401, 403, 422, 429, 503)  # every /v1 route: authentication, scope, input, rate limit, stores
MULTIPART_SCHEMA = {
    "type": "object", "required": ["file"], "additionalProperties": False,
    "properties": {"file": {"type": "string", "format": "binary", "description": "the video"},
                   "source": {"type": "string", "maxLength": MAX_SOURCE_CHARS},
                   "meta": {"type": "string", "maxLength": MAX_META_BYTES,
                            "description": f"a JSON object (at most {MAX_META_BYTES} bytes, nested at most "
                                           f"{MAX_META_DEPTH} deep)"}}}

IDEMPOTENCY = Header(None, alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                     description="makes retries safe: the same key and request give the same job; 1 to 255 "
                                 "visible ASCII characters")

bearer = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="sk_<id>_<secret>",
                    description="`Authorization: Bearer sk_…`; create keys with `sludge keys create`")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                          description="the same key in an `X-API-Key` header")
