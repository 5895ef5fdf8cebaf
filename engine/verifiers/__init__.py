"""Geometric-verification backends, chosen by name in the configuration."""

from __future__ import annotations

from collections.abc import Callable

from engine.config import EngineConfig
from engine.errors import ConfigError
from engine.neural.runtime import import_torch
from engine.verifiers.base import LocalFeatures, Verification, Verifier
from engine.verifiers.sift import SiftVerifier


def _lightglue(config: EngineConfig) -> Verifier:
    """Imported on demand: the weight-free install has no PyTorch."""
    import_torch("lightglue")
    from engine.verifiers.lightglue import LightglueVerifier

    return LightglueVerifier(config.lightglue, config.neural)


def _xfeat(config: EngineConfig) -> Verifier:
    import_torch("xfeat")
    from engine.verifiers.xfeat import XfeatVerifier

    return XfeatVerifier(config.xfeat, config.neural)


VERIFIERS: dict[str, Callable[[EngineConfig], Verifier]] = {
    SiftVerifier.name: lambda config: SiftVerifier(config.sift),
    "lightglue": _lightglue,
    "xfeat": _xfeat,
}


def create_verifier(name: str, config: EngineConfig) -> Verifier:
    """The verifier backend called `name`, built from its section of `config`."""
    try:
        factory = VERIFIERS[name]
    except KeyError:
        choices = ", ".join(sorted(VERIFIERS))
        raise ConfigError(f"unknown verifier '{name}'; choose one of: {choices}") from None
    return factory(config)


__all__ = [
    "VERIFIERS",
    "LocalFeatures",
    "SiftVerifier",
    "Verification",
    "Verifier",
    "create_verifier",
]
