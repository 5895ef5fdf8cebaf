"""The CPU runtime: one thread per torch op (the engine runs ops in parallel), as configured."""

from __future__ import annotations

import pytest

from engine.config import NeuralConfig
from engine.errors import ConfigError

torch = pytest.importorskip("torch", reason="the neural extra is not installed")

from engine.neural.runtime import create_runtime  # noqa: E402


def test_each_torch_op_gets_the_configured_threads_on_the_cpu():
    before = torch.get_num_threads()
    try:
        create_runtime(NeuralConfig(device="cpu"), "test")
        assert torch.get_num_threads() == 1
        create_runtime(NeuralConfig(device="cpu", cpu_threads=2), "test")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_zero_threads_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"'neural\.cpu_threads' is 0"):
        create_runtime(NeuralConfig(device="cpu", cpu_threads=0), "test")

