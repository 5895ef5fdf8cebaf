"""`geosleuth serve` beside hostile load: health and locates under evidence pictures, and the
memory of stalled and of aborted uploads.

A small index of a generated street is built in a temporary folder and served by
`geosleuth serve` in a child process (as a service manager runs it). Three measurements:

1. Pictures: `--locates` locates at once, alone and then beside `--pictures` concurrent
   evidence GETs (kept up while the locates run); /v1/health is asked every 100 ms
   throughout. Printed: each locate's wall time, the health check's latency (p50, max), and
   how the evidence requests ended (200 drawn, 503 refused).
2. Uploads: `--stalled` raw connections each send 3.9 MB of a 4 MB photo and stall. Printed:
   the server's RSS before, at its peak while they stall, and after they have been answered
   and closed; how each ended and when.
3. With `--aborted-rounds N`: N rounds of `--stalled` connections that each send 3.9 MB of
   a 4 MB photo and close `--abort-after-s` later, before the deadline. Printed: the
   server's RSS before, after each round, and 10 s after the last; and how many uploads the
   log says were cut off. RSS that climbs round after round is memory the aborted uploads
   keep (it did, by ~45 MB a round, while aiohttp's stored error held each partial body).

    python bench/bench_serve_hostile.py [--pictures 16] [--locates 6] [--stalled 30]
    python bench/bench_serve_hostile.py --no-pictures --max-uploads 30 --aborted-rounds 16
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_serve, street_index_and_queries  # noqa: E402

TOKEN = "bench-hostile-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTO_BYTES = 4_000_000
SENT_BYTES = 3_900_000
HEALTH_EVERY_S = 0.1
VIEWS = 18


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=16)
    parser.add_argument("--locates", type=int, default=6)
    parser.add_argument("--stalled", type=int, default=30)
    parser.add_argument("--upload-timeout-s", type=float,
                        help="[server] upload_timeout_s (default: the server's own)")
    parser.add_argument("--max-uploads", type=int,
                        help="[server] max_uploads (default: the server's own)")
    parser.add_argument("--answer-wait-s", type=float, default=60.0,
                        help="how long a stalled upload waits for an answer")
    parser.add_argument("--aborted-rounds", type=int, default=0,
                        help="rounds of --stalled uploads whose clients close early")
    parser.add_argument("--abort-after-s", type=float, default=1.0,
                        help="how long an aborted upload's client waits before it closes")
    parser.add_argument("--no-pictures", action="store_true",
                        help="skip the pictures measurement (only the uploads')")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        index, queries = street_index_and_queries(folder, 1, VIEWS)
        print(f"index of {len(list(folder.glob('*.jpg')))} views; {len(queries)} queries")
        config = folder / "serve.toml"
        settings = {"upload_timeout_s": args.upload_timeout_s, "max_uploads": args.max_uploads}
        if any(value is not None for value in settings.values()):
            config.write_text("[server]\n" + "".join(f"{name} = {value}\n" for name, value
                                                     in settings.items() if value is not None))
        server, url, log = _serve(index, config if config.exists() else None)
        try:
            if not args.no_pictures:
                asyncio.run(_pictures(url, queries, args.pictures, args.locates))
            asyncio.run(_stalled_uploads(url, server.pid, args.stalled, args.answer_wait_s))
            if args.aborted_rounds:
                asyncio.run(_aborted_uploads(url, server.pid, args.stalled,
                                             args.aborted_rounds, args.abort_after_s, log))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    return 0


def _serve(index: Path, config: Path | None) -> tuple[subprocess.Popen, str, list[str]]:
    """`geosleuth serve` on a free port once it listens, with its later log lines."""
    log: list[str] = []
    child, url = start_serve(index, TOKEN, config=config, log=log)
    return child, url, log


async def _pictures(url: str, queries: list[bytes], pictures: int, locates: int) -> None:
    async with aiohttp.ClientSession(url, headers=AUTH,
                                     connector=aiohttp.TCPConnector(limit=0)) as client:
        async with client.post("/v1/locate", data=queries[0]) as response:
            picture = (await response.json())["evidence"]["picture"]
        await _timed(client.get(picture))  # warm-up
        alone = await _timed(client.get(picture))
        print(f"one evidence picture alone: {alone * 1000:.0f} ms")
        for beside in (0, pictures):
            health: list[float] = []
            drawn: Counter[int] = Counter()
            stop = asyncio.Event()
            pressure = [asyncio.create_task(_keep_fetching(client, picture, stop, drawn))
                        for _ in range(beside)]
            watch = asyncio.create_task(_watch_health(client, stop, health))
            await asyncio.sleep(0.5 if beside else 0)
            started = time.perf_counter()
            walls = await asyncio.gather(*(_timed(client.post("/v1/locate", data=q))
                                           for q in (queries * locates)[:locates]))
            took = time.perf_counter() - started
            stop.set()
            await asyncio.gather(watch, *pressure)
            print(f"{locates} locates beside {beside} evidence GETs: all done in {took:.2f} s;"
                  f" each {', '.join(f'{w:.2f}' for w in sorted(walls))} s")
            print(f"  /v1/health: {len(health)} checks, p50"
                  f" {np.percentile(health, 50) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms")
            if beside:
                other = sum(drawn.values()) - drawn[200] - drawn[503]
                print(f"  evidence GETs meanwhile: {drawn[200]} drawn (200),"
                      f" {drawn[503]} refused (503), {other} other")


async def _timed(request) -> float:
    started = time.perf_counter()
    async with request as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def _keep_fetching(client: aiohttp.ClientSession, picture: str, stop: asyncio.Event,
                         drawn: Counter[int]) -> None:
    while not stop.is_set():
        async with client.get(picture) as response:
            await response.read()
            drawn[response.status] += 1
            if response.status == 503:
                await asyncio.sleep(0.05)  # as a client that was told to wait would


async def _watch_health(client: aiohttp.ClientSession, stop: asyncio.Event,
                        latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with client.get("/v1/health") as response:
            await response.read()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(HEALTH_EVERY_S)


async def _stalled_uploads(url: str, pid: int, count: int, wait_s: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    before = _rss_mb(pid)
    head = _upload_head(host)
    started = time.perf_counter()
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + b"\xff" * SENT_BYTES)
        connections.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in connections))
    peak = max(before, _rss_mb(pid))
    answers = [asyncio.create_task(_status_line(reader, started, wait_s))
               for reader, _ in connections]
    while not all(a.done() for a in answers):
        peak = max(peak, _rss_mb(pid))
        await asyncio.sleep(0.1)
    ended = [a.result() for a in answers]
    for _, writer in connections:
        writer.close()
    await asyncio.sleep(2)
    print(f"{count} uploads of {SENT_BYTES / 1e6:.1f} of {PHOTO_BYTES / 1e6:.0f} MB, stalled:")
    for status, times in sorted(_group(ended).items()):
        print(f"  {len(times):>3} answered {status} after {min(times):.1f}-{max(times):.1f} s")
    print(f"  server RSS: {before:.0f} MB before, {peak:.0f} MB at most while they stalled,"
          f" {_rss_mb(pid):.0f} MB 2 s after they were closed")


async def _aborted_uploads(url: str, pid: int, count: int, rounds: int, after_s: float,
                           log: list[str]) -> None:
    """Clients that leave before the deadline: each round's memory must come back."""
    host, port = url.removeprefix("http://").split(":")
    before, after_round = _rss_mb(pid), []
    for _ in range(rounds):
        connections = [await asyncio.open_connection(host, int(port)) for _ in range(count)]
        for _, writer in connections:
            writer.write(_upload_head(host) + b"\xff" * SENT_BYTES)
        # A refused upload (past max_uploads) is closed by the server: its drain fails.
        await asyncio.gather(*(w.drain() for _, w in connections), return_exceptions=True)
        await asyncio.sleep(after_s)
        for _, writer in connections:
            writer.close()
        await asyncio.sleep(2)
        after_round.append(_rss_mb(pid))
    await asyncio.sleep(10)
    cut = sum("closed the connection before its photo" in line for line in log)
    print(f"{rounds} rounds of {count} uploads of {SENT_BYTES / 1e6:.1f} of"
          f" {PHOTO_BYTES / 1e6:.0f} MB, closed {after_s:g} s later ({cut} logged as cut off):")
    print(f"  server RSS: {before:.0f} MB before; 2 s after each round"
          f" {', '.join(f'{rss:.0f}' for rss in after_round)} MB;"
          f" {_rss_mb(pid):.0f} MB 10 s after the last")


def _upload_head(host: str) -> bytes:
    return (f"POST /v1/locate HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {PHOTO_BYTES}\r\n\r\n").encode()


async def _status_line(reader: asyncio.StreamReader, started: float,
                       wait_s: float) -> tuple[str, float]:
    try:
        line = await asyncio.wait_for(reader.readline(), wait_s)
    except (TimeoutError, ConnectionError):
        return "no answer", time.perf_counter() - started
    status = line.decode("latin-1").split(" ", 2)[1] if line else "closed"
    return status, time.perf_counter() - started


def _group(ended: list[tuple[str, float]]) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for status, seconds in ended:
        groups.setdefault(status, []).append(seconds)
    return groups


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
