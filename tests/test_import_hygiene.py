"""The core is a library for two front ends: importing it must not load Textual or Rich,
and the app's first frame must not wait for the SDK (harlequin's import-hygiene test)."""

import importlib
import pkgutil
import subprocess
import sys


def modules_of(package: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Every module of `package`, found on disk (a new module is covered without listing it)."""
    root = importlib.import_module(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        if not info.name.endswith("__main__") and not any(info.name.startswith(s) for s in skip):
            found.append(info.name)
    return found


CORE_MODULES = modules_of("tunedeck.core")
TORCH_FREE_BACKEND = modules_of("tunedeck.backend", skip=("tunedeck.backend.trainers.transformer.worker",))


def test_the_module_lists_are_found_on_disk():
    assert "tunedeck.core.datasets.validate" in CORE_MODULES and "tunedeck.core.service" in CORE_MODULES
    assert "tunedeck.backend.jobs.engine" in TORCH_FREE_BACKEND
    assert not [m for m in TORCH_FREE_BACKEND if ".worker" in m]


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
    loaded = loaded_after_importing(TORCH_FREE_BACKEND)
    assert not loaded & {"torch", "transformers", "peft"}
