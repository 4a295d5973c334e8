"""The core is a library for two front ends: importing it must not load Textual or Rich,
and the app's first frame must not wait for the SDK (harlequin's import-hygiene test)."""

import subprocess
import sys

CORE_MODULES = [
    "tunedeck.core",
    "tunedeck.core.api",
    "tunedeck.core.bootstrap",
    "tunedeck.core.cache",
    "tunedeck.core.config",
    "tunedeck.core.paths",
    "tunedeck.core.poller",
    "tunedeck.core.records",
    "tunedeck.core.service",
    "tunedeck.core.text",
    "tunedeck.backend",
    "tunedeck.core.lineindex",
    "tunedeck.core.linesearch",
    "tunedeck.core.recent",
    "tunedeck.core.cleancopy",
    "tunedeck.core.datasample",
]


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_core_never_loads_textual_or_rich():
    loaded = loaded_after_importing(CORE_MODULES)
    assert "textual" not in loaded
    assert "rich" not in loaded


def test_core_service_does_not_import_the_sdk_until_connecting():
    loaded = loaded_after_importing(["tunedeck.core.service", "tunedeck.core.bootstrap", "tunedeck.core.poller"])
    assert "openai" not in loaded
    assert "numpy" not in loaded
    assert "aiohttp" not in loaded


def test_headless_cli_does_not_load_textual():
    loaded = loaded_after_importing(["tunedeck.cli.main"])
    assert "textual" not in loaded
    assert "openai" not in loaded


def test_the_local_backend_never_imports_torch():
    """Transformer training and chat run in worker processes: the server stays light, and a
    cancelled job's memory goes away with its process."""
    loaded = loaded_after_importing(
        [
            "tunedeck.backend.local_backend",
            "tunedeck.backend.trainers.transformer.server.trainer",
            "tunedeck.backend.trainers.transformer.server.chat",
            "tunedeck.backend.trainers.transformer.server.catalog",
            "tunedeck.backend.trainers.transformer.server.process",
        ]
    )
    assert not loaded & {"torch", "transformers", "peft", "trl"}
