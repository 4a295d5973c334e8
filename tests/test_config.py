from pathlib import Path

import pytest

from tunedeck.core.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_and_no_key_starts_on_local(tmp_path):
    config = load_config(tmp_path / "missing.toml", environ={})
    assert config.default_profile == "local"
    assert config.profile().backend == "local"
    assert config.notes and "local backend" in config.notes[0]


def test_openai_key_in_environment_makes_openai_the_default(tmp_path):
    config = load_config(tmp_path / "missing.toml", environ={"OPENAI_API_KEY": "sk-test"})
    assert config.default_profile == "openai"
    assert config.profile().api_key({"OPENAI_API_KEY": "sk-test"}) == "sk-test"


def test_profiles_from_toml_with_key_from_named_variable(tmp_path):
    path = write(
        tmp_path,
        """
default_profile = "vllm"
[profiles.vllm]
backend = "compatible"
base_url = "http://10.0.0.5:8000/v1"
api_key_env = "VLLM_KEY"
[profiles.az]
backend = "azure"
endpoint = "https://r.openai.azure.com"
api_version = "2025-04-01-preview"
""",
    )
    config = load_config(path, environ={})
    vllm = config.profile()
    assert vllm.backend == "compatible" and vllm.base_url == "http://10.0.0.5:8000/v1"
    assert vllm.api_key({"VLLM_KEY": "k1"}) == "k1"
    assert vllm.api_key({}) is None
    assert config.profile("az").key_env == "AZURE_OPENAI_API_KEY"
    assert set(config.profiles) == {"local", "vllm", "az"}
    assert config.next_profile("az").name == "local"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[profiles.x]\nbackend = 'gcp'\n", "backend must be one of"),
        ("[profiles.x]\nbackend = 'compatible'\n", "needs base_url"),
        ("[profiles.x]\nbackend = 'openai'\napi_key = 'sk-secret'\n", "keys are not stored"),
        ("[profiles.x]\nbackend = 'openai'\ncolour = 'red'\n", "unknown key 'colour'"),
        ("[profiles.x]\nbackend = 'local'\nport = 'eighty'\n", "port has the wrong type"),
        ("default_profile = 'nope'\n", "names no profile"),
        ("[profiles\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_profile_lists_known_ones(tmp_path):
    config = load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="known: local"):
        config.profile("work")


def test_notify_and_budget_per_profile_with_defaults(tmp_path):
    path = write(
        tmp_path,
        """
[profiles.work]
backend = "openai"
notify = ["desktop", "bell", "desktop"]
budget_usd = 25
budget_cancel = true
[profiles.plain]
backend = "openai"
""",
    )
    config = load_config(path, environ={})
    work, plain = config.profile("work"), config.profile("plain")
    assert work.notify == ("desktop", "bell") and work.budget_usd == 25.0 and work.budget_cancel is True
    assert (plain.notify, plain.budget_usd, plain.budget_cancel) == (("toast", "bell"), None, False)
    assert config.profile("local").notify == ("toast", "bell")  # the built-in one too
    assert load_config(write(tmp_path, "[profiles.q]\nbackend = 'openai'\nnotify = []\n"), {}).profile("q").notify == ()


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("notify = 'bell'", "notify has the wrong type (str)"),
        ("notify = ['toast', 'email']", "notify takes toast, bell, desktop (got 'email')"),
        ("notify = [1]", "notify takes toast, bell, desktop (got 1)"),
        ("budget_usd = 0", "budget_usd must be a positive number of dollars (got 0)"),
        ("budget_usd = -5.5", "budget_usd must be a positive number of dollars (got -5.5)"),
        ("budget_usd = nan", "budget_usd must be a positive number of dollars"),
        ("budget_usd = inf", "budget_usd must be a positive number of dollars"),
        ("budget_usd = '10'", "budget_usd has the wrong type (str)"),
        ("budget_usd = true", "budget_usd has the wrong type (bool)"),
        ("budget_cancel = 'yes'", "budget_cancel has the wrong type (str)"),
        ("budget_cancel = 1", "budget_cancel has the wrong type (int)"),
        ("budget_cancel = true", "budget_cancel needs budget_usd"),
    ],
)
def test_bad_notify_or_budget_names_the_file_the_profile_and_the_field(tmp_path, line, fragment):
    path = write(tmp_path, f"[profiles.work]\nbackend = 'openai'\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert fragment in str(info.value)
    assert f"{path}: [profiles.work]" in str(info.value)


def test_profiles_stay_frozen_and_hashable(tmp_path):
    import dataclasses

    profile = load_config(write(tmp_path, "[profiles.w]\nbackend = 'openai'\nnotify = ['bell']\n"), {}).profile("w")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.budget_usd = 1.0  # type: ignore[misc]
    assert hash(profile) == hash(dataclasses.replace(profile))


def test_a_local_profile_names_its_ray_cluster_and_serve_reads_it(tmp_path):
    import argparse

    from tunedeck.cli.serve import ray_address
    from tunedeck.core.paths import AppPaths

    paths = AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    paths.config_dir.mkdir()
    paths.config_file.write_text('[profiles.local]\nbackend = "local"\nray_address = "head:6379"\n')
    assert load_config(paths.config_file).profile("local").ray_address == "head:6379"
    assert ray_address(argparse.Namespace(profile="local", ray_address=None), paths) == "head:6379"
    assert ray_address(argparse.Namespace(profile="local", ray_address="auto"), paths) == "auto"  # the flag wins
    paths.config_file.write_text('[profiles.local]\nbackend = "local"\n')
    assert ray_address(argparse.Namespace(profile="local", ray_address=None), paths) is None  # this machine
    for text, fragment in (('[profiles.oa]\nbackend = "openai"\nray_address = "auto"\n', "ray_address is for local profiles"),
                           ('[profiles.local]\nbackend = "local"\nray_address = " "\n', "ray_address must name a cluster")):  # fmt: skip
        paths.config_file.write_text(text)
        with pytest.raises(ConfigError, match=fragment):
            load_config(paths.config_file)
