"""``/v1/videos``: submit a video (upload, URL or server path) and read its job and decision."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from ops.faults import fault_point
from ops.hooks.asgi import validation_message
from ops.hooks.errors import BadSource, UnsupportedMediaType
from ops.hooks.jobs import fingerprint
from ops.hooks.keys import ApiKey
from ops.hooks.schemas import (
    FORM_FIELDS,
    IDEMPOTENCY,
    KEYED,
    MAX_META_BYTES,
    MAX_META_DEPTH,
    MAX_SOURCE_CHARS,
    MULTIPART_SCHEMA,
    SUFFIX,
    JobAccepted,
    JobId,
    JobView,
    VideoByReference,
    check_meta,
    error_responses,
)
from ops.hooks.sources import check_path, check_url
from ops.hooks.state import State, require
from ops.hooks.worker import upload_dir

router = APIRouter()


@router.post("/v1/videos", status_code=202, response_model=JobAccepted, tags=["videos"],
             responses={**error_responses(*KEYED, 409, 415), 202: {"description": "queued (or replayed)", "links": {
                 "GetJob": {"operationId": "get_video_v1_videos__job_id__get",
                            "parameters": {"job_id": "$response.body#/id"},
                            "description": "the job's state and, once decided, its decision"}}}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": VideoByReference.model_json_schema()},
                 "multipart/form-data": {"schema": MULTIPART_SCHEMA}}}})
async def submit(request: Request, st: State, key: ApiKey = require("ingest"),
                 idem: str = IDEMPOTENCY) -> JobAccepted:
    """Submit a video: a multipart upload (`file`), or JSON with `url` or `path`. Answers at once.

    Send an `Idempotency-Key` header to make retries safe: the same key and
    request give the same job; the same key with another request is a 409.
    """
    settings = st.settings
    q = st.hooks.queue
    job_id = q.new_id()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    stored = None
    try:
        if ctype == "multipart/form-data":
            source, meta, stored, digest = await _save_upload(request, job_id, settings)
            fp = fingerprint({"upload": digest, "source": meta.get("source"), "meta": meta})
        elif ctype == "application/json":
            try:
                body = VideoByReference.model_validate_json(await request.body())
            except ValidationError as e:
                raise BadSource(f"bad JSON body: {validation_message(e.errors())}") from None
            if body.url is not None:
                check_url(body.url, settings.api.url_allow)
                source = {"kind": "url", "url": body.url}
            else:
                source = {"kind": "path", "path": str(check_path(body.path, settings.api.ingest_roots))}
            meta = {"source": body.source, **body.meta} if body.source else dict(body.meta)
            fp = fingerprint({"ref": source, "meta": meta})
        else:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data with a `file`, "
                "or application/json with `url` or `path`")
        fault_point("api.after_upload")
        job, replayed = q.submit(job_id, source, key_id=key.key_id, meta=meta,
                                 idempotency=(idem, fp) if idem is not None else None)
    except BaseException:
        if stored is not None:  # a refused or failed upload leaves nothing behind
            stored.unlink(missing_ok=True)
        raise
    if replayed and stored is not None:
        stored.unlink(missing_ok=True)  # the earlier request's copy is the one its job reads
    return JobAccepted(id=job.job_id, state=job.state, status_url=f"/v1/videos/{job.job_id}",
                       replayed=replayed)


@router.get("/v1/videos/{job_id}", response_model=JobView, tags=["videos"], responses=error_responses(*KEYED, 404))
def get_video(job_id: JobId, st: State, key: ApiKey = require("read")) -> JobView:
    """A job's state, and once decided its decision with the evidence."""
    return JobView(**st.hooks.queue.get(job_id).public())


async def _save_upload(request: Request, job_id: str, settings):
    """Stream the multipart ``file`` to the upload directory, hashing it; nothing is left behind on refusal."""
    from starlette.datastructures import UploadFile

    form = await request.form(max_files=1, max_fields=len(FORM_FIELDS))
    dest = None
    try:
        unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
        if unknown:
            raise BadSource(f"unknown multipart part(s) {', '.join(map(repr, unknown[:5]))}; the parts are "
                            f"{', '.join(FORM_FIELDS)}")
        up = form.get("file")
        if not isinstance(up, UploadFile):
            raise BadSource("multipart body has no `file` part (a file, with a filename)")
        meta = _form_meta(form.get("meta"))
        src = form.get("source")
        if isinstance(src, UploadFile):
            raise BadSource("`source` must be a text part, not a file")
        if src:
            if len(src) > MAX_SOURCE_CHARS:
                raise BadSource(f"source: at most {MAX_SOURCE_CHARS} characters (got {len(src)})")
            meta["source"] = src
        name = (up.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:200]
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        dest = upload_dir(settings) / (job_id + (suffix if SUFFIX.match(suffix) else ".bin"))
        h = hashlib.sha256()
        with open(dest, "wb") as f:
            while chunk := await up.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if dest.stat().st_size == 0:
            raise BadSource(f"uploaded file {name!r} is empty (0 bytes)")
        return {"kind": "upload", "filename": name, "bytes": dest.stat().st_size,
                "sha256": h.hexdigest(), "stored": str(dest)}, meta, dest, h.hexdigest()
    except BaseException:
        if dest is not None:
            dest.unlink(missing_ok=True)
        raise
    finally:
        await form.close()


def _form_meta(raw: Any) -> dict[str, Any]:
    """The multipart ``meta`` part: a bounded JSON object, read without deep recursion."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        raise BadSource("`meta` must be a text part holding a JSON object, not a file")
    if len(raw.encode()) > MAX_META_BYTES:
        raise BadSource(f"`meta` is {len(raw.encode())} bytes; at most {MAX_META_BYTES} are allowed")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadSource(f"`meta` is not JSON: {e}") from None
    except RecursionError:
        raise BadSource(f"`meta` is nested more than {MAX_META_DEPTH} deep") from None
    try:
        return check_meta(meta)
    except ValueError as e:
        raise BadSource(str(e)) from None
