"""`geosleuth bot`: one process, one engine, the chat adapters the config enables."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.adapters.discord_bot import DiscordAdapter
from bot.adapters.errors import ServiceDied, why_it_ended
from bot.adapters.telegram_bot import TelegramAdapter
from bot.chat.places import gazetteer
from bot.chat.service import BotService
from bot.chat.store import Store
from bot.config import AppConfig
from engine import AsyncEngine, ConfigError, GeoSleuthError, Locator
from engine.errors import ReferenceIndexError
from engine.remote import RemoteEngine

Engine = AsyncEngine | RemoteEngine

log = logging.getLogger(__name__)


async def start_engine(config: AppConfig) -> tuple[Engine | None, str | None]:
    """The engine (in this process, or the remote one `[engine.remote] url` names), or why it
    could not start: the bots still answer, with that reason.

    A missing or unreadable index, or a token the remote engine refuses, is refused instead:
    the bot would connect only to fail every photo, and the operator has named a wrong one.
    """
    engine: Engine
    if config.engine.remote.url:
        engine = RemoteEngine(config.engine.remote)
    else:
        engine = AsyncEngine(lambda: Locator.open(config.engine), config.engine.limits)
    try:
        await engine.start()
    except (ReferenceIndexError, ConfigError):
        await engine.close()
        raise
    except GeoSleuthError as exc:
        log.error("engine did not start: %s", exc)
        await engine.close()
        return None, f"GeoSleuth can't locate photos right now: {exc}"
    return engine, None


async def purge_periodically(service: BotService, every_s: float) -> None:
    """Retention while running: what /privacy promises holds after months of uptime too."""
    while True:
        await asyncio.sleep(every_s)
        try:
            purged = await service.purge_old_records()
        except Exception:  # a locked or full disk: say so, try again at the next round
            log.exception("deleting old records failed")
            continue
        if purged:
            log.info("deleted %d old records", purged)


async def _until_stopped(stop: asyncio.Event, vital: dict[asyncio.Task, str]) -> None:
    """Return when `stop` is set; raise ServiceDied when a vital task ends first."""
    stopping = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait({stopping, *vital}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    for task in done:
        if task in vital:
            reason = why_it_ended(task)
            log.error("%s ended: %s", vital[task], reason)
            raise ServiceDied(f"{vital[task]} ended ({reason}); stopping so a service manager"
                              " can restart GeoSleuth")


async def run_bots(config: AppConfig, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set or SIGTERM/SIGINT arrives; then close everything in order."""
    if not (config.telegram.enabled or config.discord.enabled):
        raise ConfigError("no chat bot is enabled: set telegram.enabled or discord.enabled"
                          " to true in the config")
    # Tokens first: a missing one is a one-line error before anything is opened.
    if config.telegram.enabled and not config.telegram.token:
        raise ConfigError("no Telegram token: set GEOSLEUTH_TELEGRAM_TOKEN or telegram.token")
    if config.discord.enabled and not config.discord.token:
        raise ConfigError("no Discord token: set GEOSLEUTH_DISCORD_TOKEN or discord.token")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = await Store.open(config.store.path, keep_images=config.store.keep_images)
    engine: Engine | None = None
    adapters: list[TelegramAdapter | DiscordAdapter] = []
    purging = None
    service: BotService | None = None
    metrics = None
    clean = False
    try:
        await asyncio.to_thread(gazetteer)  # seconds to load: not on the first user's time
        engine, engine_error = await start_engine(config)
        service = BotService(config, engine, store, engine_error)
        purged = await service.purge_old_records()
        if purged:
            log.info("deleted %d records older than %d days", purged,
                     config.store.retention_days)
        interrupted = await service.interrupted_requests()
        if config.telegram.enabled:
            adapters.append(TelegramAdapter(config.telegram, service))
        if config.discord.enabled:
            adapters.append(DiscordAdapter(config.discord, service))
        # Both adapters share this event loop, the one engine and the one store.
        for adapter in adapters:
            await adapter.start(interrupted)
        if config.service.metrics_port:
            metrics = await service.metrics.serve(config.service.metrics_host,
                                                  config.service.metrics_port)
        purging = asyncio.create_task(
            purge_periodically(service, config.store.purge_interval_s), name="retention")
        vital = {purging: "the retention timer"}
        if engine is not None and engine.worker is not None:
            vital[engine.worker] = "the engine worker"
        for adapter in adapters:
            if isinstance(adapter, DiscordAdapter) and adapter.connection is not None:
                vital[adapter.connection] = "the Discord gateway connection"
        await _until_stopped(stop, vital)
        clean = True
    finally:
        if purging is not None:
            purging.cancel()
        if service is not None:
            await service.covers.close()  # the engine goes on with the covers; a restart follows
        if metrics is not None:
            await metrics.cleanup()
        for adapter in reversed(adapters):
            try:
                await adapter.stop()
            except Exception:  # one adapter failing to stop must not leave the rest open
                log.exception("stopping %s failed", type(adapter).__name__)
        if engine is not None:
            await engine.close()
        await store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if clean:
            log.info("stopped cleanly")
