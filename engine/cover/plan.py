"""Before a cover runs: whether the engine takes it, from which sources, and what it costs.

The estimate lists one cell per source, the first the platform orders (its densest, where it
can tell), and extrapolates over every cell it says is worth asking: an upper bound where the
platform ranks cells, a rough middle where it cannot (Panoramax).
"""

from __future__ import annotations

from dataclasses import replace

from engine.config import EngineConfig
from engine.cover.jobs import CoverPlan, CoverRequest, area_km2
from engine.errors import CoverRefused, SourceUnavailable
from engine.ingest.config import SOURCE_DESCRIPTIONS
from engine.ingest.http import BadAnswer
from engine.ingest.platform import RECORD_ERRORS
from engine.ingest.registry import create_platform

# Seconds per reference photo, fetched and indexed, with the default funnel (xfeat-vlad +
# xfeat) on a 2-core CPU: bench/bench_cover.py, 116 pictures (the 29 Lund photos, 1024 x 768,
# four times each) from the fake Panoramax, a cover through the engine with the shipped
# politeness, 12.8 s from the job's start to its end: 0.11 s each. A real platform's
# answers and larger pictures add to it; a GPU takes from it.
SECONDS_PER_REFERENCE = 0.11
# The plan is asked for while someone waits for the answer: an unreachable platform is said
# after one retry, not after the crawl's five.
PLAN_RETRIES = 1


def settle(request: CoverRequest, config: EngineConfig) -> tuple[CoverRequest, tuple[str, ...]]:
    """The request with its sources settled (the defaults where it names none), and notes on
    what was left out; CoverRefused, in one sentence, for what the engine will not run."""
    cover = config.cover
    if not cover.enabled:
        raise CoverRefused("Covering new areas is turned off on this engine.")
    area = area_km2(request.bbox)
    if area > cover.max_area_km2:
        raise CoverRefused(f"That area is {area:,.1f} km², over this engine's limit of"
                           f" {cover.max_area_km2:g} km²; cover a smaller one.")
    asked = tuple(dict.fromkeys(request.sources or cover.sources))
    unknown = [name for name in asked if name not in SOURCE_DESCRIPTIONS]
    if unknown:
        raise CoverRefused(f"There is no source called '{unknown[0]}'; the sources are"
                           f" {', '.join(SOURCE_DESCRIPTIONS)}.")
    names, notes = [], []
    for name in asked:
        if name == "mapillary" and not config.ingest.mapillary_token:
            if request.sources:
                raise CoverRefused("Mapillary can't be used: this engine has no Mapillary"
                                   " token.")
            notes.append("mapillary is skipped: this engine has no Mapillary token")
            continue
        names.append(name)
    if not names:
        raise CoverRefused("None of the sources can be used on this engine.")
    return replace(request, sources=tuple(names)), tuple(notes)


def plan_cover(request: CoverRequest, config: EngineConfig) -> CoverPlan:
    """Ask each source for its cells and its first cell's pictures (blocking: run it in a
    thread). SourceUnavailable or SourceAuthFailed, in one sentence, when a platform cannot
    be asked."""
    request, notes = settle(request, config)
    ingest = replace(config.ingest, retries=min(config.ingest.retries, PLAN_RETRIES))
    cells_total = pictures = references = 0
    for name in request.sources:
        platform = create_platform(name, ingest)
        try:
            cells = platform.order_cells(request.bbox.grid(ingest.cell_km))
            first = platform.list_cell(cells[0], None).listings if cells else []
        except (BadAnswer, *RECORD_ERRORS) as exc:
            why = str(exc) if isinstance(exc, BadAnswer) else type(exc).__name__
            raise SourceUnavailable(name, f"its answer could not be read ({why})") from None
        finally:
            platform.client.close()
        cells_total += len(cells)
        pictures += len(first) * len(cells)
        views = sum(ingest.panorama.views if item.panorama else 1 for item in first)
        references += views * len(cells)
    seconds = references * SECONDS_PER_REFERENCE + cells_total / ingest.requests_per_s
    return CoverPlan(round(area_km2(request.bbox), 3), cells_total, request.sources, pictures,
                     round(seconds, 1), notes)
