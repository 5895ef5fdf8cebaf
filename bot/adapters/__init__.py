"""The chat platforms (Telegram, Discord) and the `geosleuth bot` process that runs them."""
