"""Assemble a `Service` from the user's config: the one entry point for both front ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cache import Cache
from .config import AppConfig, load_config
from .paths import AppPaths
from .service import Service

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.backend import LocalBackend


def load_app_config(paths: AppPaths | None = None) -> AppConfig:
    paths = paths or AppPaths.discover()
    return load_config(paths.config_file)


async def open_service(
    profile_name: str | None = None,
    *,
    paths: AppPaths | None = None,
    config: AppConfig | None = None,
    local_backend: LocalBackend | None = None,
) -> Service:
    """Open the cache and return a not-yet-connected service (cheap: no network, no `openai`).

    Raises `ConfigError` for the config, `CacheError` for a cache file that cannot be used (a
    damaged one is replaced: `service.cache.recovery_note` then says where it went).
    """
    paths = paths or AppPaths.discover()
    config = config or load_config(paths.config_file)
    profile = config.profile(profile_name)
    cache = await Cache.open(paths.cache_db())
    try:
        return Service(profile, cache, paths, local_backend=local_backend)
    except BaseException:
        await cache.close()  # an open cache keeps its thread, and the process, alive
        raise
