"""Where tunedeck keeps its files: the platform's config, cache and data dirs.

`TUNEDECK_HOME` puts all three under one folder (tests, demos, several installs side by side).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "tunedeck"


@dataclass(frozen=True, slots=True)
class AppPaths:
    config_dir: Path
    cache_dir: Path
    data_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def cache_db(self) -> Path:
        return self.cache_dir / "cache.sqlite3"

    @property
    def models_dir(self) -> Path:
        """Base models for the transformer trainer (besides the Hugging Face cache)."""
        return self.data_dir / "models"

    def local_backend_dir(self, profile: str) -> Path:
        return self.data_dir / "local-backend" / profile

    @classmethod
    def discover(cls) -> AppPaths:
        home = os.environ.get("TUNEDECK_HOME")
        if home:
            root = Path(home).expanduser()
            return cls(config_dir=root / "config", cache_dir=root / "cache", data_dir=root / "data")
        import platformdirs

        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP_NAME)),
            cache_dir=Path(platformdirs.user_cache_dir(APP_NAME)),
            data_dir=Path(platformdirs.user_data_dir(APP_NAME)),
        )
