"""What the app loads before its first frame: Textual and our screens, not the SDK.

`openai` alone costs ~0.4 s to import; the first frame must come from the cache well
before that, so nothing the app imports at start may pull it in (nor the local backend's
aiohttp and numpy, nor plotext, which only the Job screen needs).
"""

import subprocess
import sys

HEAVY = ("openai", "aiohttp", "numpy", "plotext", "tunedeck.backend", "httpx", "pydantic")


def loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_the_app_module_loads_nothing_heavy():
    loaded = loaded_after("import tunedeck.tui.app")
    assert not [m for m in HEAVY if m in loaded]
    assert "aiosqlite" not in loaded  # the cache layer loads while the first frame is prepared


def test_opening_the_cache_loads_nothing_heavy():
    loaded = loaded_after("import tunedeck.tui.app, tunedeck.core.bootstrap, tunedeck.core.poller")
    assert not [m for m in HEAVY if m in loaded]
