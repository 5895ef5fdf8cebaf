"""`geosleuth ingest`: crawl the open platforms over an area into an index."""

from __future__ import annotations

import argparse
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from bot.cli.bars import PhaseBars
from bot.config import AppConfig
from engine.errors import ConfigError
from engine.ingest.config import SOURCE_DESCRIPTIONS

if TYPE_CHECKING:
    from engine.ingest.crawl import SourceSummary

EPILOG_HEAD = "sources:\n"
MAX_REASONS = 10


def add_ingest_parser(commands: argparse._SubParsersAction) -> None:
    sources = (textwrap.fill(text, 78, initial_indent=f"  {name:<11}",
                             subsequent_indent=" " * 13)
               for name, text in SOURCE_DESCRIPTIONS.items())
    epilog = EPILOG_HEAD + "\n".join(sources)
    epilog += ("\n\nA run stopped by Ctrl-C or a crash resumes where it was when the same command"
               "\nruns again; nothing is fetched twice. Images keep their creator, licence and"
               "\nlink, which answers show.")
    ingest = commands.add_parser(
        "ingest", help="crawl street-level imagery of an area from the open platforms",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Crawl an area's street-level imagery from the open platforms into an"
                    " index: ≈2 km cells, deduplicated, attributed, resumable.")
    ingest.add_argument("sources", nargs="*", metavar="SOURCE",
                        help=f"one or more of: {', '.join(SOURCE_DESCRIPTIONS)}")
    ingest.add_argument("--sources", dest="source_list", metavar="A,B",
                        help="the sources as one comma-separated list (instead of SOURCE...)")
    ingest.add_argument("--bbox", required=True, metavar="W,S,E,N",
                        help="the area in degrees: west,south,east,north")
    ingest.add_argument("--index", type=Path, required=True, metavar="DIR",
                        help="index directory (created on the first run)")
    ingest.add_argument("--instance", metavar="URL",
                        help="one Panoramax instance's API (default: the meta-catalogue)")
    ingest.add_argument("--max-images", type=int, metavar="N",
                        help="stop each source after N new images")
    ingest.add_argument("--since", metavar="DATE", help="only images captured on or after DATE"
                        " (YYYY-MM-DD or ISO 8601)")
    ingest.add_argument("--refresh", action="store_true",
                        help="only what was captured since the last finished run for this area")
    ingest.set_defaults(handler=run_ingest)


def run_ingest(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.ingest.area import BBox
    from engine.ingest.crawl import Crawler, CrawlRequest
    from engine.ingest.registry import create_platform

    names = list(args.sources) + _split(args.source_list)
    if not names:
        raise ConfigError("name at least one source (e.g. 'geosleuth ingest panoramax ...');"
                          " 'geosleuth ingest --help' lists them")
    if args.max_images is not None and args.max_images < 1:
        raise ConfigError(f"--max-images must be at least 1, not {args.max_images}")
    request = CrawlRequest(bbox=BBox.parse(args.bbox), since=_since(args.since),
                           refresh=args.refresh, max_images=args.max_images)
    platforms = [create_platform(name, config.ingest, instance=args.instance)
                 for name in dict.fromkeys(names)]
    bars = _SourceBars()
    builds = PhaseBars()
    try:
        summaries = Crawler(args.index, config.engine, config.ingest, progress=bars,
                            build_progress=builds).run(platforms, request)
    finally:
        bars.close()
        builds.close()
    failed = False
    for summary in summaries:
        print(_summary_line(summary))
        for line in _reason_lines(summary):
            print(f"  {line}")
        if summary.error:
            failed = True
            print(f"geosleuth: error: {summary.error}", file=sys.stderr)
    return 2 if failed else 0


def _summary_line(summary: SourceSummary) -> str:
    state = "done" if summary.complete else ("stopped" if summary.error else "partial")
    return (f"{summary.source} ({state}): {summary.found} found, {summary.new} new,"
            f" {summary.duplicates} duplicates, {summary.skipped_count} skipped,"
            f" {summary.failed_count} failed; {summary.added} reference photos added"
            f" from {summary.cells} cells in {summary.seconds:.0f} s"
            f" ({summary.index_seconds:.0f} s indexing)")


def _reason_lines(summary: SourceSummary) -> list[str]:
    """Why each record was skipped or failed, the most frequent first: every bad record is
    counted in a line, up to MAX_REASONS lines (the rest summed in one)."""
    reasons = [*(("skipped", r, n) for r, n in summary.skipped.most_common()),
               *(("failed", r, n) for r, n in summary.failed.most_common())]
    lines = [f"{n} {kind}: {reason}" for kind, reason, n in reasons[:MAX_REASONS]]
    if rest := reasons[MAX_REASONS:]:
        lines.append(f"{sum(n for *_, n in rest)} more, for {len(rest)} other reasons")
    if summary.cells_unfinished:
        lines.append(f"{summary.cells_unfinished} cells not finished (a listing that could not"
                     " be used, or cut off at the platform's limit): the next run asks again")
    return lines


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _since(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is not a date (YYYY-MM-DD or ISO 8601)") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class _SourceBars:
    """One bar per source, over its cells, with the new images counted beside it."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, source: str, done: int, total: int, new: int) -> None:
        bar = self._bars.get(source)
        if bar is None:
            bar = self._bars[source] = tqdm(total=total, desc=source, unit="cell",
                                            file=sys.stderr, dynamic_ncols=True)
        bar.set_postfix(new=new, refresh=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
