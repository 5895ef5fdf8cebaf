"""The engine's typed errors; each message tells the user what to do about it."""

from __future__ import annotations


class GeoSleuthError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(GeoSleuthError):
    """A configuration value is missing or wrong; the message names the key."""


class ImageError(GeoSleuthError):
    """The input could not be used as a photo."""


class EmptyImage(ImageError):
    def __init__(self) -> None:
        super().__init__("The file is empty. Send the photo again.")


class FileTooLarge(ImageError):
    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(
            f"The file is {size_bytes / 1e6:.1f} MB; the limit is {limit_bytes / 1e6:.1f} MB. "
            "Send a smaller or recompressed copy."
        )


class NotAnImage(ImageError):
    def __init__(self, detail: str = "") -> None:
        hint = f" ({detail})" if detail else ""
        super().__init__(
            f"This is not an image GeoSleuth can read{hint}. Send a JPEG, PNG, WebP or HEIC photo."
        )


class TruncatedImage(ImageError):
    def __init__(self) -> None:
        super().__init__("The image is truncated or corrupt. Send the original file again.")


class AnimatedImage(ImageError):
    def __init__(self, frames: int) -> None:
        self.frames = frames
        super().__init__(
            f"The image is animated ({frames} frames). Send a single still photo "
            "(a screenshot of the frame works)."
        )


class TooManyPixels(ImageError):
    def __init__(self, pixels: int, limit: int) -> None:
        self.pixels = pixels
        self.limit = limit
        super().__init__(
            f"The image has {pixels / 1e6:.0f} megapixels; the limit is {limit / 1e6:.0f}. "
            "Send a downscaled copy."
        )


class ReferenceIndexError(GeoSleuthError):
    """Base of the reference-index errors."""


class IndexMissing(ReferenceIndexError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"No reference index at {path}. Build one with "
            f"'geosleuth index build --index {path} PHOTOS...'."
        )


class IndexCorrupt(ReferenceIndexError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"The reference index at {path} is unreadable: {detail}")


class DescriptorMismatch(ReferenceIndexError):
    def __init__(self, index_descriptor: str, query_descriptor: str) -> None:
        self.index_descriptor = index_descriptor
        self.query_descriptor = query_descriptor
        super().__init__(
            f"The index was built with descriptor '{index_descriptor}' but the engine is "
            f"configured for '{query_descriptor}'. Use the index's descriptor or rebuild the index."
        )


class EmptyIndex(ReferenceIndexError):
    def __init__(self, path: str) -> None:
        super().__init__(f"The reference index at {path} holds no images yet.")


class SourceError(GeoSleuthError):
    """A reference source (folder, CSV manifest) cannot be read."""


class SearchAreaError(GeoSleuthError):
    """A search area (bbox, centre and radius) is malformed or holds no references."""


class EngineBusy(GeoSleuthError):
    def __init__(self, queue_length: int) -> None:
        self.queue_length = queue_length
        super().__init__(
            f"The engine is busy ({queue_length} photos waiting). Try again in a minute."
        )


class EngineTimeout(GeoSleuthError):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"Locating took longer than {timeout_s:.0f} s and was stopped.")


class EngineFailed(GeoSleuthError):
    """The engine hit an unexpected internal error while handling a job."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"The engine failed on this photo: {detail}")


class EngineStopped(GeoSleuthError):
    def __init__(self) -> None:
        super().__init__("The engine is shutting down; try again shortly.")


class Cancelled(GeoSleuthError):
    """A job was stopped between stages (its caller gave up, e.g. after a timeout)."""

    def __init__(self) -> None:
        super().__init__("The job was cancelled.")
