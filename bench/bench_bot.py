"""The Telegram bot's added latency over the engine's, and its behaviour under a burst.

Runs the real `geosleuth bot` (engine, store, python-telegram-bot) against the fake Bot API
server from the tests, on 127.0.0.1, with an index of a generated street.

1. One photo at a time: end-to-end time (update queued on the server until the answer photo
   arrives there) minus the engine's own time for that photo (decode to estimate, from the
   stored answer) = what the bot adds: polling, download, queue hop, map, upload.
2. A burst of 50 photos from 10 users at once: every photo's outcome and end-to-end times.

    python bench/bench_bot.py [--photos 20]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.adapters.runner import run_bots  # noqa: E402
from bot.config import AppConfig, StoreConfig, TelegramConfig  # noqa: E402
from bot.render.map import MapStyle  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.index.builder import build_index  # noqa: E402
from engine.sources import scan_source  # noqa: E402
from engine.synthetic import make_street  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, private_chat, user  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20, help="sequential photos")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="geosleuth-bench-bot-") as scratch:
        folder = Path(scratch)
        engine, queries = _street_index(folder)
        asyncio.run(_bench(folder, engine, queries, args.photos))
    return 0


def _street_index(folder: Path) -> tuple[EngineConfig, list[np.ndarray]]:
    views = make_street(seed=11, n_views=30)
    queries = []
    with (folder / "refs.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "lat", "lon"])
        for i, view in enumerate(views, 1):
            if i % 3 == 0:
                queries.append(view.rgb)
            else:
                (folder / f"{i}.jpg").write_bytes(_jpeg(view.rgb))
                writer.writerow([f"{i}.jpg", view.lat, view.lon])
    build_index(folder / "index", [scan_source(folder / "refs.csv")], EngineConfig())
    return replace(EngineConfig(), index_path=folder / "index"), queries


def _jpeg(rgb: np.ndarray, serial: int = 0) -> bytes:
    """A distinct file per send (a serial in the JPEG comment): no answer comes from the cache."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=90, comment=f"bench {serial}")
    return out.getvalue()


async def _bench(
    folder: Path, engine: EngineConfig, queries: list[np.ndarray], photos: int
) -> None:
    users = [user(3000 + i, f"User{i}", f"user{i}") for i in range(10)]
    burst_users = [user(3100 + i, f"Burst{i}", f"burst{i}") for i in range(10)]
    async with FakeTelegram() as tg:
        for person in users + burst_users:
            tg.add_chat(private_chat(person))
        config = AppConfig(
            engine=engine, map=MapStyle(tiles_enabled=False),
            store=StoreConfig(path=folder / "bot.sqlite"),
            telegram=TelegramConfig(enabled=True, token="123:BENCH", base_url=tg.base_url,
                                    base_file_url=tg.base_file_url),
        )
        stop = asyncio.Event()
        bot = asyncio.create_task(run_bots(config, stop))
        await tg.wait_for("setMyCommands", timeout=60)

        end_to_end = []
        for i in range(photos):
            person = users[i % len(users)]
            sent_at = time.monotonic()
            tg.send_photo(private_chat(person), person, _jpeg(queries[i % len(queries)], i))
            answers = await tg.wait_for("sendPhoto", count=i + 1, timeout=60)
            end_to_end.append((answers[-1].received_at - sent_at) * 1000)
        engine_ms = _engine_ms(folder / "bot.sqlite")[-photos:]
        added = np.array(end_to_end) - np.array(engine_ms)
        print(f"sequential, {photos} photos (one at a time):")
        _line("end to end", end_to_end)
        _line("engine (decode..estimate)", engine_ms)
        _line("added by the bot", added)

        before = len(tg.calls)
        burst_at = time.monotonic()
        for i in range(50):
            person = burst_users[i % len(burst_users)]
            tg.send_photo(private_chat(person), person,
                          _jpeg(queries[i % len(queries)], 1000 + i))

        def final(call) -> bool:
            text = call.params.get("text", "")
            return call.method == "sendPhoto" or (
                call.method in ("sendMessage", "editMessageText")
                and ("is busy" in text or "Too many photos" in text))

        await tg.wait_for(lambda c: final(c) and tg.calls.index(c) >= before, count=50,
                          timeout=600)
        burst = [c for c in tg.calls[before:] if final(c)]
        photos_sent = [c for c in burst if c.method == "sendPhoto"]
        print(f"\nburst: 50 photos from 10 users at once -> {len(photos_sent)} answered with a"
              f" map, {sum('is busy' in c.params.get('text', '') for c in burst)} busy,"
              f" {sum('Too many photos' in c.params.get('text', '') for c in burst)}"
              " rate-limited,"
              f" {len(burst)} answers in all")
        _line("time to answer", [(c.received_at - burst_at) * 1000 for c in photos_sent])
        stop.set()
        await bot


def _engine_ms(database: Path) -> list[float]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT result_json FROM requests WHERE status='done' ORDER BY id")
        return [json.loads(r[0])["timings_ms"]["total"] for r in rows]


def _line(label: str, values) -> None:
    values = np.asarray(values, dtype=float)
    print(f"  {label:<28} p50 {np.percentile(values, 50):7.0f} ms"
          f"   p95 {np.percentile(values, 95):7.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
