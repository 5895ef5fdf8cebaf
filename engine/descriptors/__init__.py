"""Global-descriptor backends, chosen by name in the configuration."""

from __future__ import annotations

from collections.abc import Callable

from engine.config import EngineConfig
from engine.descriptors.base import GlobalDescriptor
from engine.descriptors.vlad import VladDescriptor
from engine.errors import ConfigError
from engine.neural.runtime import import_torch


def _cosplace(config: EngineConfig) -> GlobalDescriptor:
    """Imported on demand: the weight-free install has no PyTorch."""
    import_torch("cosplace")
    from engine.descriptors.cosplace import CosplaceDescriptor

    return CosplaceDescriptor(config.cosplace, config.neural)


def _xfeat_vlad(config: EngineConfig) -> GlobalDescriptor:
    import_torch("xfeat-vlad")
    from engine.descriptors.xfeat_vlad import XfeatVladDescriptor

    return XfeatVladDescriptor(config)


DESCRIPTORS: dict[str, Callable[[EngineConfig], GlobalDescriptor]] = {
    VladDescriptor.name: lambda config: VladDescriptor(config.vlad),
    "cosplace": _cosplace,
    "xfeat-vlad": _xfeat_vlad,
}


def create_descriptor(name: str, config: EngineConfig) -> GlobalDescriptor:
    """The descriptor backend called `name`, built from its section of `config`."""
    try:
        factory = DESCRIPTORS[name]
    except KeyError:
        choices = ", ".join(sorted(DESCRIPTORS))
        raise ConfigError(f"unknown descriptor '{name}'; choose one of: {choices}") from None
    return factory(config)


__all__ = ["DESCRIPTORS", "GlobalDescriptor", "VladDescriptor", "create_descriptor"]
