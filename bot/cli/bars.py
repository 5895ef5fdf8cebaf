"""Progress bars on stderr for the long commands (so --json output on stdout stays clean)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class PhaseBars:
    """One tqdm bar per build phase, closed when done; a phase that starts again (the next
    batch of an ingest) gets a new bar."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        bar = self._bars.get(phase)
        if bar is None or done < bar.n:
            if bar is not None:
                bar.close()
            bar = self._bars[phase] = tqdm(total=total, desc=phase, unit="img", file=sys.stderr,
                                           dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
