"""GeoSleuth's application around the engine (which never imports it). Its rooms:

- `bot.cli`: the `geosleuth` command line (locate, index, ingest, eval, demo, history, ...).
- `bot.chat`: the platform-neutral chat service and what it keeps (store, limits, gazetteer).
- `bot.adapters`: Telegram and Discord, and the `geosleuth bot` process that runs them.
- `bot.render`: what an answer looks like: maps, wording, case exports.
- `bot.config`: the one typed configuration all of them read.
"""
