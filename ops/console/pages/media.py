"""Thumbnails of stored frames and of image exemplars, served only to a signed-in reviewer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from indexer.errors import SludgeError
from indexer.thumbs import make_thumbnail, save_jpeg, thumbnail_file
from ops.console.web import Ctx, Refused, Signed

router = APIRouter(include_in_schema=False)

_CACHE = {"Cache-Control": "private, max-age=3600"}


@router.get("/ui/thumbs/{video_id}/{name}")
def thumb(video_id: str, name: str, c: Ctx, s: Signed):
    p = thumbnail_file(c.troot, video_id, name)
    if p is None:
        raise Refused(404, "no such thumbnail")
    return FileResponse(p, media_type="image/jpeg", headers=_CACHE)


@router.get("/ui/exemplars/{exemplar_id}/thumb")
def exemplar_thumb(exemplar_id: str, c: Ctx, s: Signed):
    if not exemplar_id.isalnum() or len(exemplar_id) > 64:
        raise Refused(404, "no such exemplar")
    dest = c.troot / "exemplars" / f"{exemplar_id}.jpg"
    if not dest.is_file():
        ex = c.stores.bank().get(exemplar_id)
        if ex is None or ex.kind == "text":
            raise Refused(404, "no such image exemplar")
        image = _exemplar_image(ex)
        if image is None:
            raise Refused(404, "the exemplar's image is no longer on this server")
        save_jpeg(make_thumbnail(image), dest)
    return FileResponse(dest, media_type="image/jpeg", headers=_CACHE)


def _exemplar_image(ex):
    """The pixels of an image or frame exemplar, when its source is still on this server."""
    from indexer.errors import MediaError
    from search.exemplars import read_image

    src = ex.source
    if ex.kind == "image":
        try:
            return read_image(src)
        except MediaError:
            return None
    if ex.kind == "frame" and "@" in src:
        path, _, ts = src.rpartition("@")
        try:
            from indexer.video import VideoReader

            with VideoReader(path) as r:
                frames = r.frames_at([float(ts.rstrip("s"))])
            return frames[0].image if frames else None
        except (SludgeError, ValueError, OSError):
            return None
    return None
