"""The import contracts in pyproject.toml hold, and the checker really fails on a violation.

import-linter reads a package from disk by its import name, so the packages are copied into
a temporary folder laid out as installed (`tunedeck/core`, `tunedeck/backend`...), following
pyproject's package-dir mapping, and checked there in a subprocess whose path starts with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def stage(root: Path) -> Path:
    """The project's packages under `root`, as an installed copy lays them out."""
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        target = root.joinpath(*package.split("."))
        shutil.copytree(REPO / folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-P", "-c", script, "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return stage(tmp_path_factory.mktemp("installed"))


def test_the_contracts_hold(staged):
    result = lint(staged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/widget_in_core.py", "import textual.widget", "core never imports Textual"),
        ("backend/jobs/asks_the_app.py", "from tunedeck.core import service", "the backend imports nothing of the app"),
        ("tui/screens/reaches_in.py", "from tunedeck.backend.jobs import engine", "only through its front door"),
        ("backend/jobs/loads_torch.py", "import torch", "only the transformer worker imports torch"),
        ("tui/widgets/knows_the_app.py", "from tunedeck.tui import app", "never on the app class"),
        ("cli/draws.py", "from tunedeck.tui.widgets import header", "the headless CLI never loads Textual"),
    ],
)
def test_a_violation_breaks_its_contract(tmp_path, module, line, contract):
    root = stage(tmp_path)
    package_dir = PYPROJECT["tool"]["setuptools"]["package-dir"]
    folder, _, rest = module.partition("/")
    package = next(name for name, path in package_dir.items() if path == folder)
    root.joinpath(*package.split("."), rest).write_text(line + "\n", encoding="utf-8")
    result = lint(root)
    assert result.returncode == 1
    assert "1 broken" in result.stdout and contract in result.stdout


def test_the_backend_contract_lists_every_module_of_core_but_the_dataset_rules():
    contract = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["id"] == "backend-standalone")
    allowed = {"tunedeck.core.datasets", "tunedeck.core.text"}
    core = {
        f"tunedeck.core.{p.stem}" if p.is_file() else f"tunedeck.core.{p.name}"
        for p in (REPO / "core").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file())
    }
    assert core - allowed == {m for m in contract["forbidden_modules"] if m.startswith("tunedeck.core.")}


def test_the_train_extra_lists_what_the_trainer_checks_for():
    """The extra installs exactly what the transformer trainer needs, and the install check
    asks for the packages the worker imports (gguf is read by transformers itself)."""
    from tunedeck.backend.trainers.transformer import REQUIRED_PACKAGES

    extra = {r.split(">")[0].split("<")[0].split("=")[0].strip() for r in PYPROJECT["project"]["optional-dependencies"]["train"]}
    assert extra == {*REQUIRED_PACKAGES, "gguf"}


def test_every_package_folder_is_installed():
    """`pip install .` (not editable) installs only the packages pyproject lists: a folder with
    an `__init__.py` that is missing there works in the editable checkout and breaks the app
    installed from the README's first command."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = set()
    for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(root).parts
            on_disk.add(".".join((package, *relative)))
    assert on_disk - listed == set()
