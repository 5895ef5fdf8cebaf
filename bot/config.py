"""The application's one typed configuration: TOML file, then environment overrides.

Secrets (bot tokens) come from the environment or a config file kept outside the repository;
they are excluded from every repr so they cannot reach a log line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.render.map import MapStyle
from engine.config import EngineConfig, build_config
from engine.errors import ConfigError
from engine.ingest.config import MAPILLARY_TOKEN_ENV, IngestConfig
from engine.server.config import SERVER_TOKENS_ENV, ServerConfig

CONFIG_ENV = "GEOSLEUTH_CONFIG"
INDEX_ENV = "GEOSLEUTH_INDEX"
TELEGRAM_TOKEN_ENV = "GEOSLEUTH_TELEGRAM_TOKEN"
DISCORD_TOKEN_ENV = "GEOSLEUTH_DISCORD_TOKEN"
WEBHOOK_SECRET_ENV = "GEOSLEUTH_TELEGRAM_WEBHOOK_SECRET"
ENGINE_TOKEN_ENV = "GEOSLEUTH_ENGINE_TOKEN"
MILVUS_TOKEN_ENV = "GEOSLEUTH_MILVUS_TOKEN"
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class AccessConfig:
    """Empty allowlists mean open to everyone; ids are compared as strings."""

    allowed_users: tuple[str, ...] = ()
    allowed_chats: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimitConfig:
    user_requests: int = 5
    user_window_s: float = 60.0
    chat_requests: int = 20
    chat_window_s: float = 60.0


@dataclass(frozen=True)
class ServiceConfig:
    max_file_bytes: int = 20_000_000
    # Recent photos kept in memory (never on disk) so "evidence" can draw them on request.
    recent_photos_bytes: int = 64_000_000
    # Prometheus /metrics of the bots (updates, answers, refusals, time to answer); 0 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # A cover's progress message is brought up to date this often (one engine call; edits
    # only when the words change, so the platforms' edit limits are never near).
    cover_poll_s: float = 3.0
    # When a cover finishes, the chat's "no confident match" photos of the last this many days
    # whose area or leads lie in it are located again (where the photo is still at hand).
    relook_days: float = 7.0


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("geosleuth.sqlite")
    keep_images: bool = False
    retention_days: int = 30
    purge_interval_s: float = 3600.0  # how often records older than retention_days go


@dataclass(frozen=True)
class TelegramConfig:
    enabled: bool = False
    token: str = field(default="", repr=False)
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: str = "polling"  # or "webhook"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class DiscordConfig:
    enabled: bool = False
    token: str = field(default="", repr=False)
    # Development: commands synced to these guilds at once. Empty: synced globally (production;
    # Discord may take up to an hour to show global changes).
    dev_guilds: tuple[str, ...] = ()
    allowed_guilds: tuple[str, ...] = ()  # empty = every guild the bot is in
    allowed_channels: tuple[str, ...] = ()  # empty = every channel
    allowed_role: str = ""  # a role name or id members need; empty = everyone
    dms_enabled: bool = True
    # Empty: Discord itself. Set for a proxy or a test double of Discord's API.
    api_base: str = ""  # e.g. "https://discord.com/api/v10"
    gateway_url: str = ""  # e.g. "wss://gateway.discord.gg/"


@dataclass(frozen=True)
class AppConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    map: MapStyle = field(default_factory=MapStyle)
    access: AccessConfig = field(default_factory=AccessConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read `path` (or $GEOSLEUTH_CONFIG); no file means the defaults. $GEOSLEUTH_INDEX and
    the secrets ($GEOSLEUTH_TELEGRAM_TOKEN, $GEOSLEUTH_DISCORD_TOKEN,
    $GEOSLEUTH_TELEGRAM_WEBHOOK_SECRET, $GEOSLEUTH_MAPILLARY_TOKEN, $GEOSLEUTH_SERVER_TOKENS,
    $GEOSLEUTH_ENGINE_TOKEN) win over the file."""
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    values: dict = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    config = build_config(AppConfig, values)
    if env.get(INDEX_ENV):
        config = replace(config, engine=replace(config.engine, index_path=Path(env[INDEX_ENV])))
    if env.get(TELEGRAM_TOKEN_ENV):
        config = replace(config, telegram=replace(config.telegram, token=env[TELEGRAM_TOKEN_ENV]))
    if env.get(DISCORD_TOKEN_ENV):
        config = replace(config, discord=replace(config.discord, token=env[DISCORD_TOKEN_ENV]))
    if env.get(ENGINE_TOKEN_ENV):
        remote = replace(config.engine.remote, token=env[ENGINE_TOKEN_ENV])
        config = replace(config, engine=replace(config.engine, remote=remote))
    if env.get(MILVUS_TOKEN_ENV):
        index = replace(config.engine.index, token=env[MILVUS_TOKEN_ENV])
        config = replace(config, engine=replace(config.engine, index=index))
    if env.get(SERVER_TOKENS_ENV):
        tokens = tuple(t.strip() for t in env[SERVER_TOKENS_ENV].split(",") if t.strip())
        config = replace(config, server=replace(config.server, tokens=tokens))
    if env.get(MAPILLARY_TOKEN_ENV):
        config = replace(config, ingest=replace(config.ingest,
                                                mapillary_token=env[MAPILLARY_TOKEN_ENV]))
    if env.get(WEBHOOK_SECRET_ENV):
        config = replace(config, telegram=replace(config.telegram,
                                                  webhook_secret=env[WEBHOOK_SECRET_ENV]))
    # The engine crawls covers with the same [ingest] settings as `geosleuth ingest`.
    config = replace(config, engine=replace(config.engine, ingest=config.ingest))
    _check_telegram(config.telegram)
    return config


def _check_telegram(telegram: TelegramConfig) -> None:
    if telegram.mode not in ("polling", "webhook"):
        raise ConfigError("'telegram.mode' must be \"polling\" or \"webhook\"")
    # Without the secret anyone who finds the URL can post forged updates (spoofed admins,
    # /forget on any chat): a webhook never starts without one.
    if telegram.mode == "webhook" and telegram.enabled:
        if not telegram.webhook_secret:
            raise ConfigError(
                "'telegram.webhook_secret' is empty, and a webhook without one accepts forged "
                f"updates. Set it (or ${WEBHOOK_SECRET_ENV}) to a random string, e.g. the output"
                " of: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        if not WEBHOOK_SECRET.fullmatch(telegram.webhook_secret):
            raise ConfigError("'telegram.webhook_secret' must be 1-256 characters of A-Z, a-z,"
                              " 0-9, _ and - (Telegram's rule for secret tokens)")
