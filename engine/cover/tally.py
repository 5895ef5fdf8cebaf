"""What a cover did, counted across the engine's restarts.

A crawl started again lists its unfinished cell again: what the killed run had fetched there
now looks "already indexed", and what it had found is found twice. So the counts that come
from listings (found, duplicates, skipped, failed) are kept as they stood at the last cell
finished, and the ones that count work done (pictures fetched, references added) as they
stood at the last picture or batch; a later start adds its own to them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.ingest.crawl import SourceSummary


@dataclass(slots=True)
class SourceTally:
    found: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    new_at_cell: int = 0  # pictures fetched when the last cell was finished
    new: int = 0
    added: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "duplicates": self.duplicates,
                "skipped": dict(self.skipped), "failed": dict(self.failed),
                "new_at_cell": self.new_at_cell, "new": self.new, "added": self.added}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceTally:
        return cls(int(data["found"]), int(data["duplicates"]), Counter(data["skipped"]),
                   Counter(data["failed"]), int(data["new_at_cell"]), int(data["new"]),
                   int(data["added"]))


class RunTally:
    """One start of a cover, for one source: the earlier starts' tally plus this crawl's."""

    def __init__(self, carried: SourceTally) -> None:
        self._carried = carried
        self._at_cell: SourceTally | None = None  # this start's counts at its last cell

    def cell_finished(self, summary: SourceSummary) -> None:
        self._at_cell = SourceTally(summary.found, summary.duplicates, Counter(summary.skipped),
                                    Counter(summary.failed), summary.new)

    def total(self, summary: SourceSummary) -> SourceTally:
        carried, at_cell = self._carried, self._at_cell
        if at_cell is None:  # nothing finished yet in this start: only work done adds up
            return SourceTally(carried.found, carried.duplicates, carried.skipped,
                               carried.failed, carried.new_at_cell,
                               carried.new + summary.new, carried.added + summary.added)
        # The first cell of this start was the one the last start left unfinished: what that
        # start fetched there is no duplicate.
        fetched_before = carried.new - carried.new_at_cell
        return SourceTally(
            carried.found + at_cell.found,
            carried.duplicates + max(0, at_cell.duplicates - fetched_before),
            carried.skipped + at_cell.skipped, carried.failed + at_cell.failed,
            carried.new + at_cell.new_at_cell, carried.new + summary.new,
            carried.added + summary.added)
