"""Where map tiles come from: a local MBTiles file, a disk cache, then the tile server.

Air-gapped hosts read tiles from an MBTiles file (SQLite; rows in TMS order, y flipped);
hosts online keep what they fetched on disk, so a popular area is fetched once and tile
servers' usage policies are respected.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

import requests


class TileSource:
    def __init__(self, url_template: str, user_agent: str, timeout_s: float, *,
                 mbtiles_path: str = "", cache_dir: str = "", cache_days: float = 30.0) -> None:
        self._template = url_template
        self._headers = {"User-Agent": user_agent}
        self._timeout_s = timeout_s
        self._mbtiles = Path(mbtiles_path) if mbtiles_path else None
        self._cache = None
        if cache_dir:
            # One folder per tile server, so two styles never mix their tiles.
            server = hashlib.sha256(url_template.encode()).hexdigest()[:12]
            self._cache = Path(cache_dir) / server
        self._cache_s = cache_days * 86400.0

    @property
    def online(self) -> bool:
        return self._mbtiles is None

    def fetch(self, z: int, x: int, y: int) -> bytes | None:
        """The tile's image bytes, or None when no source has it."""
        if self._mbtiles is not None:
            return self._from_mbtiles(z, x, y)
        cached = self._from_cache(z, x, y)
        if cached is not None:
            return cached
        response = requests.get(self._template.format(z=z, x=x, y=y), headers=self._headers,
                                timeout=self._timeout_s)
        if response.status_code != 200:
            return None
        self._to_cache(z, x, y, response.content)
        return response.content

    def _from_mbtiles(self, z: int, x: int, y: int) -> bytes | None:
        with sqlite3.connect(f"file:{self._mbtiles}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level=? AND tile_column=? AND tile_row=?",
                (z, x, (1 << z) - 1 - y),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _cache_path(self, z: int, x: int, y: int) -> Path | None:
        return None if self._cache is None else self._cache / str(z) / str(x) / f"{y}.tile"

    def _from_cache(self, z: int, x: int, y: int) -> bytes | None:
        path = self._cache_path(z, x, y)
        if path is None or not path.is_file():
            return None
        if time.time() - path.stat().st_mtime > self._cache_s:
            return None
        return path.read_bytes()

    def _to_cache(self, z: int, x: int, y: int, data: bytes) -> None:
        path = self._cache_path(z, x, y)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
