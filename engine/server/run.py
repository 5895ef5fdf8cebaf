"""Run the server until SIGINT/SIGTERM, or until the engine worker dies (then exit non-zero,
so a service manager restarts it)."""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from engine.async_engine import AsyncEngine
from engine.config import EngineConfig
from engine.errors import EngineFailed
from engine.locator import Locator
from engine.server.app import create_app
from engine.server.config import ServerConfig


async def serve(engine_config: EngineConfig, config: ServerConfig) -> None:
    engine = AsyncEngine(lambda: Locator.open(engine_config), engine_config.limits)
    app = create_app(engine, config, engine_config.decode)  # no token: refused now
    await engine.start()
    runner = web.AppRunner(app, access_log=None)  # a request line is the client's business
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"geosleuth serve: listening on http://{host}:{port}", file=sys.stderr,
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        stopped = asyncio.create_task(stop.wait())
        assert engine.worker is not None
        done, _ = await asyncio.wait({stopped, engine.worker},
                                     return_when=asyncio.FIRST_COMPLETED)
        if stopped not in done:
            raise EngineFailed("the engine worker stopped; the server exits so it is restarted")
        stopped.cancel()
    finally:
        await runner.cleanup()
        await engine.close()
