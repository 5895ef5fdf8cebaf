"""What every platform module offers the crawler: the cells worth asking, and one cell's
listings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engine.ingest.area import BBox
from engine.ingest.http import PoliteClient, is_web_url
from engine.ingest.listing import Listing

# What parsing a record the platform got wrong raises: the record is skipped, not the cell.
RECORD_ERRORS = (AttributeError, KeyError, IndexError, TypeError, ValueError)


@dataclass(slots=True)
class CellListing:
    listings: list[Listing] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # why each unusable record was left out
    complete: bool = True  # False: the platform cut the answer off; ask for the quarters

    def take(self, listing: Listing | str, cell: BBox, since: str | None = None) -> None:
        """One parsed record: its reason if it is unusable, else kept if it lies in `cell`
        and (for a platform that cannot filter by capture time) was captured at or after
        `since`."""
        if isinstance(listing, str):
            self.malformed.append(listing)
        elif cell.contains(listing.lat, listing.lon) and (
                since is None or (listing.captured_at or "") >= since):
            # The link reaches chat messages as a hyperlink: only the web's own kind.
            link = listing.link if is_web_url(listing.link) else None
            self.listings.append(replace(listing, link=link))

    def take_each(self, records: Iterable[Any], parse: Callable[[Any], Listing | str],
                  cell: BBox, since: str | None = None) -> None:
        """`take` every record, one that breaks its parser counted as malformed."""
        for record in records:
            try:
                listing = parse(record)
            except RECORD_ERRORS as exc:
                listing = f"a record that could not be read ({type(exc).__name__})"
            self.take(listing, cell, since)


class Platform(Protocol):
    name: str
    client: PoliteClient

    def order_cells(self, cells: list[BBox]) -> list[BBox]:
        """The cells to crawl, densest first where the platform can tell; empty ones dropped."""
        ...

    def list_cell(self, cell: BBox, since: str | None) -> CellListing:
        """Every image in `cell` captured at or after `since` (ISO 8601), all pages."""
        ...
