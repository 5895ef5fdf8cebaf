"""Pool workers run each native op on the configured threads: the engine parallelises itself,
and a library that also starts one thread per core oversubscribes the machine."""

from __future__ import annotations

import cv2
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from engine.threads import worker_pool


@pytest.fixture
def restored_thread_counts():
    """The limits are process-wide: put back what the other tests run with."""
    opencv_threads = cv2.getNumThreads()
    with threadpool_limits(limits=None):
        yield
    cv2.setNumThreads(opencv_threads)


def _native_threads(_: int) -> tuple[set[int], int]:
    blas = {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    return blas, cv2.getNumThreads()


@pytest.mark.usefixtures("restored_thread_counts")
def test_pool_workers_run_blas_and_opencv_ops_on_the_configured_threads():
    with worker_pool(1, "test") as pool:
        counts = list(pool.map(_native_threads, range(8)))
    assert {n for blas, _ in counts for n in blas} == {1}
    assert {opencv for _, opencv in counts} == {1}


@pytest.mark.usefixtures("restored_thread_counts")
def test_pool_workers_run_torch_ops_on_the_configured_threads():
    torch = pytest.importorskip("torch", reason="the neural extra is not installed")
    with worker_pool(1, "test") as pool:
        assert set(pool.map(lambda _: torch.get_num_threads(), range(8))) == {1}
