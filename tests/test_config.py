"""Configuration: one typed object from TOML and the environment; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_no_file_means_the_defaults():
    config = load_config(None, env={})
    assert config.engine.descriptor == "xfeat-vlad" and config.engine.verifier == "xfeat"
    assert config.engine.search.top_k == 10


def test_the_example_config_loads_and_equals_the_defaults():
    assert load_config(ROOT / "config.example.toml", env={}) == load_config(None, env={})


def test_values_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "geosleuth.toml"
    path.write_text('[engine]\nindex_path = "/data/idx"\n[engine.search]\ntop_k = 20\n')
    config = load_config(path, env={"GEOSLEUTH_INDEX": "/elsewhere"})
    assert config.engine.search.top_k == 20
    assert config.engine.index_path == Path("/elsewhere")
    assert load_config(None, env={"GEOSLEUTH_CONFIG": str(path)}).engine.search.top_k == 20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[engine.search]\ntop_kk = 3\n", "unknown setting 'engine.search.top_kk'"),
        ("[engine.search]\ntop_k = 'ten'\n", "'engine.search.top_k' must be an integer"),
        ("[engine]\nstore_reference_features = 1\n",
         "'engine.store_reference_features' must be true or false"),
        ("[engine.estimate]\nbase_radius_m = true\n", "'engine.estimate.base_radius_m' must be"),
        ("[engine]\nsearch = 5\n", "'engine.search' must be a table"),
        ("engine = [", "not valid TOML"),
    ],
)
def test_a_wrong_setting_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(path, env={})


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_a_telegram_webhook_without_a_secret_does_not_start(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[telegram]\nenabled = true\nmode = "webhook"\n'
                    'webhook_url = "https://bot.example.org/telegram"\n')
    with pytest.raises(ConfigError, match=r"webhook_secret' is empty.*forged updates"):
        load_config(path, env={})
    config = load_config(path, env={"GEOSLEUTH_TELEGRAM_WEBHOOK_SECRET": "x" * 40})
    assert config.telegram.webhook_secret == "x" * 40
    with pytest.raises(ConfigError, match="1-256 characters"):
        load_config(path, env={"GEOSLEUTH_TELEGRAM_WEBHOOK_SECRET": "has spaces"})
