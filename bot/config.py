"""The application's one typed configuration: TOML file, then environment overrides."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.render import MapStyle
from engine.config import EngineConfig, build_config
from engine.errors import ConfigError

CONFIG_ENV = "GEOSLEUTH_CONFIG"
INDEX_ENV = "GEOSLEUTH_INDEX"


@dataclass(frozen=True)
class AppConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    map: MapStyle = field(default_factory=MapStyle)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read `path` (or $GEOSLEUTH_CONFIG); no file means the defaults. $GEOSLEUTH_INDEX wins
    over the file's engine.index_path."""
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
    return config
