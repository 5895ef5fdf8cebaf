"""Thread pools whose workers each run one native operation at a time.

The engine parallelises itself (candidates verified side by side, photos prepared side by
side); a worker whose torch op starts its own OpenMP team of one thread per core
oversubscribes the machine. OpenMP's thread count is per calling thread, so it is set in each
worker as it starts: bench_locate.py at 10,000 references on 2 cores, locate p50 710 ms and
verify 589 ms against 774 and 645 ms with torch's default. (OMP_NUM_THREADS=1 for the whole
process reached 616 and 467 ms: some other library's threads are still to be bounded.)
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor


def worker_pool(threads_per_op: int, name: str) -> ThreadPoolExecutor:
    """One worker per core, each limited to `threads_per_op` threads inside a torch op."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix=name,
                              initializer=_limit_threads, initargs=(threads_per_op,))


def _limit_threads(threads_per_op: int) -> None:
    torch = sys.modules.get("torch")  # without the neural extra there is nothing to limit
    if torch is not None:
        torch.set_num_threads(threads_per_op)
