"""Profiles: which backend tunedeck talks to, read from a TOML file.

A profile names a backend kind (`openai`, `azure`, `compatible`, `local`) and where its
key comes from. Keys themselves are never stored in the config, the cache or logs: a
profile only names the environment variable that holds the key.

Example config (``tunedeck paths`` prints where it lives)::

    default_profile = "work"

    [profiles.work]
    backend = "openai"                 # key from OPENAI_API_KEY unless api_key_env says otherwise

    [profiles.azure]
    backend = "azure"
    endpoint = "https://my-resource.openai.azure.com"
    api_version = "2025-04-01-preview"
    api_key_env = "AZURE_OPENAI_API_KEY"

    [profiles.vllm]
    backend = "compatible"
    base_url = "http://10.0.0.5:8000/v1"
    api_key_env = "VLLM_KEY"

    [profiles.local]
    backend = "local"
    time_scale = 1.0

Every profile also takes how a job's news reaches the user and a spending cap::

    notify = ["toast", "bell", "desktop"]   # any of these; default ["toast", "bell"]
    budget_usd = 50.0                  # warn when running jobs have spent 80% of this
    budget_cancel = true               # and cancel them at 100% (default false)

A local profile can give its models other names, so code written for OpenAI runs unchanged
(the backend trains and answers with the model named; restart it after a change with
`tunedeck serve stop`)::

    [profiles.local.model_aliases]
    "gpt-4o-mini-2024-07-18" = "Qwen/Qwen2.5-0.5B-Instruct"
    "gpt-4.1-mini-2025-04-14" = "tunedeck-ngram"

A local profile can run its transformer jobs on a Ray cluster (the `cluster` extra; the
backend's data folder and the models folder on a filesystem every node mounts)::

    [profiles.local]
    backend = "local"
    ray_address = "auto"          # or "head-node:6379", or "ray://head-node:10001"
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

BACKENDS = ("openai", "azure", "compatible", "local")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY", "compatible": "OPENAI_API_KEY"}
LOCAL_PROFILE = "local"
NOTIFY_KINDS = ("toast", "bell", "desktop")
DEFAULT_NOTIFY = ("toast", "bell")  # a desktop notification needs an optional package and a desktop


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    backend: str
    base_url: str | None = None
    endpoint: str | None = None
    api_version: str | None = None
    api_key_env: str | None = None
    port: int = 0
    time_scale: float = 1.0
    builtin: bool = False  # made by tunedeck, not the user's config: its key needs consent (consent.py)
    notify: tuple[str, ...] = DEFAULT_NOTIFY
    """How a job's news (status, failure, overfitting, budget) reaches the user: any of `NOTIFY_KINDS`."""
    budget_usd: float | None = None
    """A cap on what the profile's running jobs have spent: warned at 80% (None: no cap)."""
    budget_cancel: bool = False
    """Cancel the running jobs when their spend reaches `budget_usd`."""
    model_aliases: tuple[tuple[str, str], ...] = ()
    """A local profile's other names for its models, e.g. an OpenAI model's name for a local
    one, so code written for OpenAI runs unchanged (its backend resolves them)."""
    ray_address: str | None = None
    """A local profile's Ray cluster, where its backend runs transformer jobs (None: this machine)."""

    @property
    def key_env(self) -> str | None:
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.backend)

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key from the environment, read at the moment it is needed."""
        env = os.environ if environ is None else environ
        name = self.key_env
        return env.get(name) or None if name else None

    def describe(self) -> str:
        """Where this profile points, for the header; never includes the key."""
        if self.backend == "local":
            return "local backend"
        if self.backend == "azure":
            return f"Azure {self.endpoint or '?'}"
        if self.backend == "compatible":
            return self.base_url or "?"
        # Without a base_url the SDK sends requests (and the key) to OPENAI_BASE_URL when set.
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or "api.openai.com"


@dataclass(frozen=True, slots=True)
class AppConfig:
    profiles: dict[str, Profile]
    default_profile: str
    source: Path | None = None
    notes: tuple[str, ...] = field(default=())

    def profile(self, name: str | None = None) -> Profile:
        wanted = name or self.default_profile
        if wanted not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise ConfigError(f"no profile named {wanted!r} (known: {known})")
        return self.profiles[wanted]

    def next_profile(self, current: str) -> Profile:
        """The profile after `current` in name order, wrapping round (one key switches)."""
        names = sorted(self.profiles)
        index = names.index(current) if current in names else -1
        return self.profiles[names[(index + 1) % len(names)]]


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read `path` if it exists, and add the built-in profiles.

    Built-ins: `local` always; `openai` when OPENAI_API_KEY is set. With no key and no
    config, the default is `local`, so a newcomer gets a working app with no setup.
    """
    env = os.environ if environ is None else environ
    profiles: dict[str, Profile] = {LOCAL_PROFILE: Profile(name=LOCAL_PROFILE, backend="local", builtin=True)}
    if env.get("OPENAI_API_KEY"):
        profiles["openai"] = Profile(name="openai", backend="openai", builtin=True)
    default: str | None = None
    source: Path | None = None
    if path.is_file():
        source = path
        data = _read_toml(path)
        tables = data.get("profiles", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{path}: profiles must be a table of [profiles.NAME] tables")
        for name, table in tables.items():
            profiles[name] = _parse_profile(path, name, table)
        default = data.get("default_profile")
        if default is not None and not isinstance(default, str):
            raise ConfigError(f"{path}: default_profile must be a profile's name (a string)")
        if default is not None and default not in profiles:
            raise ConfigError(f"{path}: default_profile = {default!r} names no profile")
    if default is None:
        default = "openai" if "openai" in profiles and profiles["openai"].api_key(env) else LOCAL_PROFILE
    notes = ()
    if default == LOCAL_PROFILE and source is None:
        notes = ("No API key configured: using the built-in local backend.",)
    return AppConfig(profiles=profiles, default_profile=default, source=source, notes=notes)


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


_PROFILE_KEYS = {
    "backend": str,
    "base_url": str,
    "endpoint": str,
    "api_version": str,
    "api_key_env": str,
    "port": int,
    "time_scale": (int, float),
    "notify": list,
    "budget_usd": (int, float),
    "budget_cancel": bool,
    "model_aliases": dict,
    "ray_address": str,
}


def _parse_profile(path: Path, name: str, table: object) -> Profile:
    where = f"{path}: [profiles.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key, value in table.items():
        if key == "api_key":
            raise ConfigError(f"{where}: keys are not stored in the config; set api_key_env to the variable holding it")
        expected = _PROFILE_KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(_PROFILE_KEYS)})")
        wrong_bool = isinstance(value, bool) and expected is not bool  # TOML's true is no number
        if not isinstance(value, expected) or wrong_bool:
            raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
    backend = table.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}: backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend == "compatible" and not table.get("base_url"):
        raise ConfigError(f"{where}: a compatible backend needs base_url")
    if backend == "azure" and not (table.get("endpoint") and table.get("api_version")):
        raise ConfigError(f"{where}: an azure backend needs endpoint and api_version")
    fields = dict(table)
    if "notify" in fields:
        fields["notify"] = _notify(where, fields["notify"])
    if "budget_usd" in fields:
        budget = float(fields["budget_usd"])
        if not (math.isfinite(budget) and budget > 0):
            got = fields["budget_usd"]
            raise ConfigError(f"{where}: budget_usd must be a positive number of dollars (got {got!r})")
        fields["budget_usd"] = budget
    if "model_aliases" in fields:
        fields["model_aliases"] = _model_aliases(where, backend, fields["model_aliases"])
    if "ray_address" in fields and backend != "local":
        raise ConfigError(f"{where}: ray_address is for local profiles (their backend runs the jobs)")
    if "ray_address" in fields and not fields["ray_address"].strip():
        raise ConfigError(f"{where}: ray_address must name a cluster (auto, host:port or ray://host:port)")
    if fields.get("budget_cancel") and "budget_usd" not in fields:
        raise ConfigError(f"{where}: budget_cancel needs budget_usd (the cap at which running jobs are cancelled)")
    return Profile(name=name, **fields)


def _model_aliases(where: str, backend: str, table: dict) -> tuple[tuple[str, str], ...]:
    if backend != "local":
        raise ConfigError(f"{where}: model_aliases is for local profiles (a provider names its own models)")
    pairs = []
    for alias, model in table.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"{where}: model_aliases.{alias!r} must name a model (a string), not {model!r}")
        pairs.append((alias, model))
    return tuple(pairs)


# -- what the app remembers between runs -----------------------------------------------------
# The app writes these itself, to a file of its own beside config.toml: the user's config is
# never rewritten (its comments and layout are theirs).

APP_SETTINGS_FILE = "app-settings.json"


def saved_theme(config_dir: Path) -> str | None:
    """The theme the user last picked in the app (None: never picked, or unreadable)."""
    import json

    try:
        data = json.loads((config_dir / APP_SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a convenience: a missing or damaged file means the default theme
    theme = data.get("theme") if isinstance(data, dict) else None
    return theme if isinstance(theme, str) and theme else None


def save_theme(config_dir: Path, theme: str) -> None:
    """Remember `theme` for the next run (written whole, then renamed into place)."""
    import json

    if saved_theme(config_dir) == theme:
        return
    path = config_dir / APP_SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data["theme"] = theme
    config_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _notify(where: str, value: list) -> tuple[str, ...]:
    kinds: list[str] = []
    for item in value:
        if item not in NOTIFY_KINDS:
            raise ConfigError(f"{where}: notify takes {', '.join(NOTIFY_KINDS)} (got {item!r})")
        if item not in kinds:
            kinds.append(item)
    return tuple(kinds)
