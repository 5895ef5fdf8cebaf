"""Albums: does fusing several photos of one place beat its photos one by one?

Albums are built from the cross-capture sets' queries: every group of 2-3 queries taken
within `--within` metres of each other (a team forwarding photos of one corner).
  - `night`: real night photos by strangers (sf_night_west, 100 m counts as right);
  - `xs`: later Street View (sf_xs_west, every query grouped, 25 m counts as right);
  - `xs-hard`: the same albums, each photo cropped to its central half and recompressed as a
    chat app does (what a forwarded screenshot loses), so single photos fail more often.
Each photo is located once by the default funnel; the albums are then fused at several
`album_photo_weight`s. It prints, per set: the album answer right / wrong, the most confident
single photo of each album right / wrong (what a user would pick without fusion), the average
single photo, and any photo right (an oracle no answer can beat). Counts beside percentages.

    python bench/bench_album.py [--weights 0.25,0.5,1.0] [--within 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.album import AlbumPhoto, AlbumResult, fuse  # noqa: E402
from engine.config import EngineConfig, NeuralConfig  # noqa: E402
from engine.degrade import center_crop, recompress_chat  # noqa: E402
from engine.estimate import InlierCurve  # noqa: E402
from engine.evaluation import query_bytes  # noqa: E402
from engine.geo import haversine_m  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.results import LocateResult  # noqa: E402
from engine.sources import scan_source  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
NIGHT = SHARED / "sf_night_west"
XCAP = SHARED / "sf_xs_west"


@dataclass(frozen=True)
class Photo:
    path: Path
    lat: float
    lon: float


@dataclass(frozen=True)
class Album:
    photos: tuple[Photo, ...]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0.25,0.5,1.0")
    parser.add_argument("--within", type=float, default=30.0,
                        help="metres between an album's photos (night: twice this)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".cache" / "crosscapture")
    args = parser.parse_args()
    if not (NIGHT.is_dir() and XCAP.is_dir()):
        print(f"needs the real photos in {NIGHT} and {XCAP}; not found", file=sys.stderr)
        return 2
    weights = [float(w) for w in args.weights.split(",")]
    config = replace(EngineConfig(), neural=NeuralConfig(device="cpu"))
    sets = {
        "night": (NIGHT, _albums(NIGHT / "queries", 2 * args.within), 100.0, ()),
        "xs": (XCAP, _albums(XCAP / "queries", args.within), 25.0, ()),
        "xs-hard": (XCAP, _albums(XCAP / "queries", args.within), 25.0,
                    (lambda rgb: center_crop(rgb, 0.5), recompress_chat)),
    }
    print(f"default funnel ({config.descriptor} + {config.verifier}"
          f" {config.xfeat.matcher}), albums of 2-3 photos taken within {args.within:g} m"
          f" (night: {2 * args.within:g} m), 2 CPU threads", flush=True)
    print(f"{'set':8} {'fusion':>14} {'albums':>6}  {'album right':>13} {'wrong':>9}"
          f"  {'most confident':>14} {'wrong':>9}  {'avg photo':>10}  {'any photo':>13}")
    for name, (folder, albums, right_m, degradations) in sets.items():
        started = time.perf_counter()
        results, curve = _locate_all(args.work, folder, config, albums, degradations)
        seconds = time.perf_counter() - started
        for weight in weights:
            estimate = replace(config.estimate, album_photo_weight=weight)
            fused = [fuse([AlbumPhoto(f"photo {i}", results[p])
                           for i, p in enumerate(album.photos, 1)], estimate, curve)
                     for album in albums]
            _print(name, f"weight {weight:g}", albums, fused, results, right_m)
        print(f"{'':8} ({sum(len(a.photos) for a in albums)} photos located in {seconds:.0f} s)",
              flush=True)
    return 0


def _albums(folder: Path, within_m: float) -> list[Album]:
    """Greedy groups: each query not yet used, with up to two unused others within reach."""
    records = sorted(scan_source(folder).records, key=lambda r: r.source_id)
    photos = [Photo(Path(r.image_path), r.lat, r.lon) for r in records]
    used: set[int] = set()
    albums = []
    for i, photo in enumerate(photos):
        if i in used:
            continue
        near = [j for j, other in enumerate(photos)
                if j != i and j not in used
                and haversine_m(photo.lat, photo.lon, other.lat, other.lon) <= within_m][:2]
        if near:
            group = [i, *near]
            used.update(group)
            albums.append(Album(tuple(photos[j] for j in group)))
    return albums


def _locate_all(work: Path, folder: Path, config: EngineConfig, albums: list[Album],
                degradations) -> tuple[dict[Photo, LocateResult], InlierCurve]:
    """Every album photo's own answer, and the curve the locator answered with."""
    features = "xvlad-xfeat"
    index_dir = work / f"{'night' if folder == NIGHT else 'xs'}-{features}"
    build_index(index_dir, [scan_source(folder / "database")], config)
    locator = Locator.open(replace(config, index_path=index_dir))
    try:
        return {p: locator.locate(query_bytes(p.path, degradations))
                for album in albums for p in album.photos}, locator.curve
    finally:
        locator.close()


def _right(lat: float | None, lon: float | None, photos: tuple[Photo, ...],
           right_m: float) -> bool:
    return lat is not None and lon is not None and any(
        haversine_m(lat, lon, p.lat, p.lon) <= right_m for p in photos)


def _print(name: str, fusion: str, albums: list[Album], fused: list[AlbumResult],
           results: dict[Photo, LocateResult], right_m: float) -> None:
    n = len(albums)
    album_right = sum(_right(f.lat, f.lon, a.photos, right_m) for a, f in zip(albums, fused,
                                                                              strict=True))
    album_wrong = sum(f.located for f in fused) - album_right
    confident = [max(a.photos, key=lambda p: results[p].confidence) for a in albums]
    confident_right = sum(_right(results[p].lat, results[p].lon, (p,), right_m)
                          for p in confident)
    confident_wrong = sum(results[p].located for p in confident) - confident_right
    average = statistics.fmean(
        statistics.fmean(_right(results[p].lat, results[p].lon, (p,), right_m)
                         for p in a.photos) for a in albums)
    any_right = sum(any(_right(results[p].lat, results[p].lon, (p,), right_m)
                        for p in a.photos) for a in albums)
    print(f"{name:8} {fusion:>14} {n:>6}  {_of(album_right, n):>13} {album_wrong:>9}"
          f"  {_of(confident_right, n):>14} {confident_wrong:>9}  {average:>10.0%}"
          f"  {_of(any_right, n):>13}", flush=True)


def _of(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else "0/0"


if __name__ == "__main__":
    raise SystemExit(main())
