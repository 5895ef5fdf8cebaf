"""PyTorch for the neural backends: imported on demand, a device chosen, a precision set."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import NeuralConfig
from engine.errors import ConfigError, DeviceUnavailable, NeuralUnavailable

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def import_torch(backend: str) -> Any:
    """`torch`, or a clear error naming what to install (the base install has no PyTorch)."""
    try:
        import kornia  # noqa: F401  (the verifiers need it; fail here, once, with one message)
        import torch
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise NeuralUnavailable(backend, str(exc)) from exc
    return torch


def select_device(name: str, backend: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    torch = import_torch(backend)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"'neural.device' is '{name}'; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = (f"built with CUDA {torch.version.cuda}" if torch.version.cuda
                     else "built without CUDA")
            raise DeviceUnavailable(name, f"PyTorch ({build}) finds no CUDA GPU; a GPU host"
                                          " needs an NVIDIA driver made for that CUDA or later,"
                                          " and a container needs the GPU passed to it")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceUnavailable(name, f"there {'is' if count == 1 else 'are'} {count} "
                                          f"CUDA device{'s' if count != 1 else ''}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceUnavailable(name, "this PyTorch has no Apple MPS device")
    elif device.type != "cpu":
        raise ConfigError(f"'neural.device' is '{name}'; use auto, cpu, cuda, cuda:N or mps")
    return device


@dataclass(frozen=True)
class Runtime:
    """The device a backend's models live on and the autocast precision they run in."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain float32

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @property
    def label(self) -> str:
        precision = "fp32" if self.autocast_dtype is None else str(self.autocast_dtype)[6:]
        return f"{self.device}/{precision}"


def create_runtime(config: NeuralConfig, backend: str) -> Runtime:
    """Half precision by default only on CUDA, where tensor cores make it pay."""
    if config.precision not in PRECISIONS:
        raise ConfigError(
            f"'neural.precision' is '{config.precision}'; choose one of: {', '.join(PRECISIONS)}"
        )
    torch = import_torch(backend)
    device = select_device(config.device, backend)
    if config.cpu_threads < 1:
        raise ConfigError(f"'neural.cpu_threads' is {config.cpu_threads}; it must be 1 or more")
    if device.type == "cpu":
        # Denormal floats make x86 arithmetic many times slower and change no answer here:
        # flushing them to zero halved DISK's time on the CPU. (Both are process-wide.)
        torch.set_flush_denormal(True)
        torch.set_num_threads(config.cpu_threads)
    precision = config.precision
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    return Runtime(device=device, autocast_dtype=dtypes[precision])
