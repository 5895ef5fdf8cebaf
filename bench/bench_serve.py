"""`geosleuth serve` under load, its own overhead, and a SIGKILL in the middle.

A small index of generated streets is built in a temporary folder; its held-out views are
the queries. Three measurements, in one run:

1. Overhead: each query located in-process (`Locator`) and then through the server
   (`RemoteEngine`, one at a time), side by side; the difference is HTTP + queue.
2. Load: `--requests` locates from `--clients` concurrent clients; every request must end in
   a result or a typed refusal (none lost); p50/p95 of the wall time per request.
3. Kill: the same load again, the server SIGKILLed three seconds in and restarted on the
   same port; every request must still end in a result or a typed failure, and a round of
   requests once the restarted server is up must all succeed.

    python bench/bench_serve.py [--requests 200] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import EngineConfig, RemoteConfig  # noqa: E402
from engine.errors import GeoSleuthError  # noqa: E402
from engine.locator import Locator  # noqa: E402
from engine.remote import RemoteEngine  # noqa: E402
from tests.conftest import start_serve, street_index_and_queries  # noqa: E402

TOKEN = "bench-serve-token"
STREETS = 3
VIEWS = 18


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        index, queries = _index(Path(scratch))
        config = EngineConfig(index_path=index)
        local = _in_process(config, queries)
        port = _free_port()
        server = _serve(index, port)
        try:
            url = f"http://127.0.0.1:{port}"
            served = asyncio.run(_one_at_a_time(url, queries))
            overhead = np.array(served) - np.array(local)
            print(f"overhead (served - in-process, {len(queries)} queries, one at a time):"
                  f" p50 {np.percentile(overhead, 50):.1f} ms, p95"
                  f" {np.percentile(overhead, 95):.1f} ms; in-process p50"
                  f" {np.percentile(local, 50):.0f} ms, served p50"
                  f" {np.percentile(served, 50):.0f} ms")
            ended = asyncio.run(_load(url, queries, args.requests, args.clients))
            _report(f"load, {args.clients} clients", ended, args.requests)
            ended, after = asyncio.run(
                _load_with_kill(url, queries, args.requests, args.clients, index, port, server))
            _report("kill and restart", ended, args.requests)
            print(f"  after the restart: {after['ok']}/{after['sent']} requests succeeded")
        finally:
            for process in _servers:
                process.kill()
    return 0


_servers: list[subprocess.Popen] = []


def _index(folder: Path) -> tuple[Path, list[bytes]]:
    started = time.perf_counter()
    index, queries = street_index_and_queries(folder, STREETS, VIEWS)
    print(f"index of {len(list(folder.glob('*.jpg')))} views built in"
          f" {time.perf_counter() - started:.0f} s; {len(queries)} queries")
    return index, queries


def _in_process(config: EngineConfig, queries: list[bytes]) -> list[float]:
    locator = Locator.open(config)
    try:
        locator.locate(queries[0])  # warm-up
        times = []
        for data in queries:
            started = time.perf_counter()
            locator.locate(data)
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        locator.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(index: Path, port: int) -> subprocess.Popen:
    process, _ = start_serve(index, TOKEN, port)
    _servers.append(process)
    return process


async def _client(url: str) -> RemoteEngine:
    engine = RemoteEngine(RemoteConfig(url=url, token=TOKEN, connect_retries=2))
    await engine.start()
    return engine


async def _one_at_a_time(url: str, queries: list[bytes]) -> list[float]:
    engine = await _client(url)
    try:
        await engine.locate(queries[0])  # warm-up
        times = []
        for data in queries:
            started = time.perf_counter()
            await engine.locate(data)
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        await engine.close()


async def _load(url: str, queries: list[bytes], requests: int,
                clients: int) -> list[tuple[float, str, float]]:
    """(start time, outcome, ms) of every request."""
    ended: list[tuple[float, str, float]] = []
    per_client = -(-requests // clients)

    async def run(client_id: int) -> None:
        engine = await _client(url)
        try:
            for n in range(min(per_client, requests - client_id * per_client)):
                data = queries[(client_id + n) % len(queries)]
                started = time.perf_counter()
                try:
                    outcome = f"result ({(await engine.locate(data)).status.value})"
                except GeoSleuthError as exc:
                    outcome = f"refused: {type(exc).__name__}"
                except Exception as exc:  # a request lost without a typed answer
                    outcome = f"LOST: {type(exc).__name__}"
                ended.append((started, outcome, (time.perf_counter() - started) * 1000))
        finally:
            await engine.close()

    await asyncio.gather(*(run(c) for c in range(clients)))
    return ended


async def _load_with_kill(url, queries, requests, clients, index, port, server):
    async def killer() -> None:
        await asyncio.sleep(3)
        server.send_signal(signal.SIGKILL)
        server.wait()
        await asyncio.sleep(1)
        await asyncio.to_thread(_serve, index, port)

    kill = asyncio.create_task(killer())
    ended = await _load(url, queries, requests, clients)
    await kill
    later = await _load(url, queries, 2 * clients, clients)  # the restarted server
    return ended, {"sent": len(later), "ok": sum(o.startswith("result") for _, o, _ in later)}


def _report(title: str, ended: list[tuple[float, str, float]], requests: int) -> None:
    outcomes = Counter(outcome for _, outcome, _ in ended)
    wall = [ms for _, _, ms in ended]
    lost = sum(v for k, v in outcomes.items() if k.startswith("LOST"))
    print(f"{title}: {len(ended)}/{requests} requests ended, {lost} lost;"
          f" p50 {np.percentile(wall, 50):.0f} ms, p95 {np.percentile(wall, 95):.0f} ms")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:>4}  {outcome}")


if __name__ == "__main__":
    raise SystemExit(main())
