"""Weight files: read a published state dict from disk, check it fits, hash it.

A state dict that does not fit the architecture is refused with the keys and shapes that
differ, never loaded half-way (`strict=False` in a library would hide exactly that).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import WeightsMismatch, WeightsMissing, WeightsUnreadable
from engine.neural.published import published_for_file

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
) -> None:
    """Load `state` into `module` only if every key and shape fits (`optional` may be absent)."""
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
