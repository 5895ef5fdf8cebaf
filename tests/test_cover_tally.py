"""A cover's counts across restarts (engine/cover/tally.py): a start that lists the killed
start's unfinished cell again counts nothing twice."""

from __future__ import annotations

from collections import Counter

from engine.cover.tally import RunTally, SourceTally
from engine.ingest.crawl import SourceSummary


def _summary(found: int, new: int, duplicates: int = 0, added: int = 0,
             failed: int = 0) -> SourceSummary:
    summary = SourceSummary("panoramax", found=found, new=new, duplicates=duplicates,
                            added=added)
    summary.failed = Counter({"image not available: HTTP 404": failed} if failed else {})
    return summary


def test_a_start_killed_mid_cell_then_resumed_counts_each_picture_once():
    # First start: cell 1 (4 pictures, one missing) finished; cell 2 listed 4 more and two
    # were fetched (and staged, none indexed yet) when the process was killed.
    first = RunTally(SourceTally())
    first.cell_finished(_summary(found=5, new=4, failed=1, added=4))
    killed = first.total(_summary(found=9, new=6, failed=1, added=4))
    assert (killed.found, killed.new, killed.new_at_cell, killed.added) == (5, 6, 4, 4)

    # It restarts from what was saved. Before it finishes a cell, only work adds up.
    again = RunTally(SourceTally.from_json(killed.to_json()))
    early = again.total(_summary(found=4, new=1, duplicates=2))
    assert (early.found, early.duplicates, early.new) == (5, 0, 7)
    # Cell 2 again: its two pictures fetched before look "already indexed", but are this
    # cover's; its two others are fetched now; everything staged is indexed.
    again.cell_finished(_summary(found=4, new=2, duplicates=2, added=4))
    done = again.total(_summary(found=4, new=2, duplicates=2, added=4))
    assert (done.found, done.duplicates, done.new, done.added) == (9, 0, 8, 8)
    assert done.failed == Counter({"image not available: HTTP 404": 1})


def test_a_picture_indexed_before_the_cover_stays_a_duplicate():
    first = RunTally(SourceTally())
    first.cell_finished(_summary(found=3, new=1, duplicates=2, added=1))
    total = first.total(_summary(found=3, new=1, duplicates=2, added=1))
    assert (total.found, total.duplicates, total.new, total.added) == (3, 2, 1, 1)
