"""The HTTP answer for each refusal: a status a client can act on, and one line of reason."""

from __future__ import annotations

from engine.errors import (
    AnimatedImage,
    CoverRefused,
    EmptyImage,
    EngineBusy,
    EngineFailed,
    EngineStopped,
    EngineTimeout,
    FileTooLarge,
    GeoSleuthError,
    ImageError,
    ImageTooSmall,
    NotAnImage,
    SearchAreaError,
    SourceAuthFailed,
    SourceUnavailable,
    TooManyPixels,
    TruncatedImage,
    VectorStoreUnavailable,
)


class BadRequest(GeoSleuthError):
    """A request the server cannot take as it is (a missing field, a wrong parameter)."""


class ServerBusy(GeoSleuthError):
    """Too many uploads or pictures at once: refused before any work, so safe to retry."""


class UploadTimeout(GeoSleuthError):
    """The photo's body did not arrive within the upload deadline."""


class UploadAborted(GeoSleuthError):
    """The client closed the connection before its photo had arrived."""


# Most specific first: the first class the error is an instance of decides.
_STATUS: tuple[tuple[type[GeoSleuthError], int, str], ...] = (
    (FileTooLarge, 413, "too_large"),
    (TooManyPixels, 413, "too_many_pixels"),
    (NotAnImage, 415, "not_an_image"),
    (EmptyImage, 422, "empty"),
    (TruncatedImage, 422, "broken_image"),
    (AnimatedImage, 422, "animated"),
    (ImageTooSmall, 422, "too_small"),
    (ImageError, 422, "bad_image"),
    (SearchAreaError, 400, "bad_area"),
    (BadRequest, 400, "bad_request"),
    (UploadAborted, 400, "upload_aborted"),
    (UploadTimeout, 408, "upload_timeout"),
    (ServerBusy, 503, "busy"),
    (EngineBusy, 503, "busy"),
    (EngineTimeout, 504, "timeout"),
    (EngineStopped, 503, "stopped"),
    (EngineFailed, 503, "engine_failed"),
    (VectorStoreUnavailable, 503, "index_unavailable"),
    (CoverRefused, 422, "cover_refused"),
    (SourceAuthFailed, 502, "source_auth_failed"),
    (SourceUnavailable, 502, "source_unavailable"),
)


def http_status(exc: GeoSleuthError) -> tuple[int, str]:
    """(HTTP status, short kind for the JSON body and the error metric)."""
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "error"
