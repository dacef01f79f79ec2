"""Errors of the hooks service, each carrying the HTTP status the API answers with."""

from __future__ import annotations

from indexer.errors import SludgeError


class HooksError(SludgeError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class Unauthorized(HooksError):
    status = 401
    code = "unauthorized"


class Forbidden(HooksError):
    status = 403
    code = "forbidden"


class JobNotFound(HooksError):
    status = 404
    code = "not_found"


class Conflict(HooksError):
    status = 409
    code = "conflict"


class TooLarge(HooksError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(HooksError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(HooksError):
    status = 429
    code = "rate_limited"


class BadSource(HooksError):
    """A URL or path the service will not read (scheme, address, root, size)."""

    status = 422
    code = "bad_source"


class Unavailable(HooksError):
    status = 503
    code = "unavailable"
