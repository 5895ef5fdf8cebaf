"""Thread pools whose workers each run one native operation at a time.

The engine parallelises itself (candidates verified side by side, photos prepared side by
side), so a worker whose native op starts its own team of one thread per core oversubscribes
the machine. Three libraries do: torch (OpenMP, whose count is per calling thread, so it is
set in each worker as it starts), and OpenBLAS under numpy's matrix products and OpenCV's own
pool, whose counts are process-wide, so they are set when a pool is made.

Measured with bench_locate.py at 10,000 references on 2 cores, locate p50: 879 ms with every
library's default, 630 ms with OpenBLAS alone bounded (OPENBLAS_NUM_THREADS=1), 589 ms with
OMP_NUM_THREADS=1 for the whole process.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
from threadpoolctl import threadpool_limits


def worker_pool(threads_per_op: int, name: str) -> ThreadPoolExecutor:
    """One worker per core, each native op in it limited to `threads_per_op` threads."""
    threadpool_limits(limits=threads_per_op, user_api="blas")
    cv2.setNumThreads(threads_per_op)
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=name,
                              initializer=_limit_worker_threads, initargs=(threads_per_op,))


def _limit_worker_threads(threads_per_op: int) -> None:
    """Per thread: OpenMP's limit (and so an OpenMP-built OpenBLAS's, as faiss bundles for
    Milvus Lite) holds for the thread that sets it, and torch's is set per thread too."""
    threadpool_limits(limits=threads_per_op, user_api="openmp")
    torch = sys.modules.get("torch")  # without the neural extra there is nothing to limit
    if torch is not None:
        torch.set_num_threads(threads_per_op)
