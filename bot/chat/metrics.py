"""The bots' Prometheus metrics, served by `geosleuth bot` on `[service] metrics_port`."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

ANSWER_BUCKETS_S = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 120.0)


class BotMetrics:
    """Counters the service and the adapters update; one registry per process (or test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.updates = Counter("geosleuth_bot_updates", "Updates and interactions received",
                               ["platform"], registry=self.registry)
        self.answers = Counter("geosleuth_bot_answers", "Photos answered, by outcome",
                               ["outcome"], registry=self.registry)
        self.refusals = Counter("geosleuth_bot_refusals", "Requests refused, by reason",
                                ["reason"], registry=self.registry)
        self.answer_seconds = Histogram("geosleuth_bot_answer_seconds",
                                        "From an admitted photo to its answer or refusal",
                                        buckets=ANSWER_BUCKETS_S, registry=self.registry)

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """/metrics on host:port (the bot's only listening socket besides a webhook)."""
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%d/metrics", host, port)
        return runner
