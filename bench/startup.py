"""Start-up benchmark: process start to first frame, tunedeck (cached rows shown) vs a bare Textual app.

Target: tunedeck's first frame, with the cached jobs in it, within 1.5x a
bare Textual app's start. Each run is a fresh process; the parent times from spawn until
the child writes a marker at Textual's `Ready` (the first frame). Runs are interleaved so
machine noise hits both sides alike. The tunedeck child also reports which heavy modules
were loaded by then (openai, numpy, aiohttp must not be).

usage: python bench/startup.py [--runs 25]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_CHILD = """
import json, sys, time
from textual.app import App
class Bare(App):
    def on_ready(self):
        open(sys.argv[1], "w").write(json.dumps({"at": time.time()}))
        self.exit()
Bare().run(headless=True)
"""

TUNEDECK_CHILD = """
import json, sys, time
from tunedeck.tui.app import TunedeckApp
class Timed(TunedeckApp):
    def on_ready(self):
        super().on_ready()
        heavy = sorted(m for m in ("openai", "numpy", "aiohttp", "plotext") if m in sys.modules)
        open(sys.argv[1], "w").write(json.dumps({"at": time.time(), "rows": len(self.state.rows), "source": self.state.rows_source, "heavy": heavy}))
        self.exit()
Timed(connect=False, poll=False).run(headless=True)
"""


def seed_cache(home: Path, jobs: int) -> None:
    """A cache holding `jobs` finished jobs, written through the real cache layer."""
    import asyncio

    from tunedeck.core.cache import Cache
    from tunedeck.core.paths import AppPaths

    async def write() -> None:
        os.environ["TUNEDECK_HOME"] = str(home)
        cache = await Cache.open(AppPaths.discover().cache_db())
        now = int(time.time())
        rows = [
            {
                "id": f"ftjob-bench{i:019d}",
                "object": "fine_tuning.job",
                "model": "tunedeck-ngram",
                "status": "succeeded",
                "created_at": now - i * 60,
                "fine_tuned_model": f"ft:tunedeck-ngram:local::{i:08d}",
                "method": {"type": "supervised"},
                "error": {},
            }
            for i in range(jobs)
        ]
        await cache.upsert_jobs("local", rows)
        await cache.close()

    asyncio.run(write())


def time_child(code: str, env: dict[str, str], marker: Path) -> tuple[float, str]:
    marker.unlink(missing_ok=True)
    start = time.time()
    # Run from the marker's folder: a checkout in the working directory would shadow the install.
    subprocess.run(
        [sys.executable, "-c", code, str(marker)], env=env, cwd=marker.parent, check=True, capture_output=True, timeout=60
    )
    # The child stamps the wall clock at its first frame; its exit afterwards is not counted.
    text = marker.read_text()
    return json.loads(text)["at"] - start, text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=50, help="cached jobs shown in the first frame")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        seed_cache(home, args.jobs)
        env = {**os.environ, "TUNEDECK_HOME": str(home)}
        env.pop("OPENAI_API_KEY", None)
        marker = Path(tmp) / "marker"
        bare: list[float] = []
        ours: list[float] = []
        report = {}
        time_child(BARE_CHILD, env, marker)  # warm the page cache once
        time_child(TUNEDECK_CHILD, env, marker)
        for _ in range(args.runs):
            bare.append(time_child(BARE_CHILD, env, marker)[0])
            elapsed, text = time_child(TUNEDECK_CHILD, env, marker)
            ours.append(elapsed)
            report = json.loads(text)
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"runs: {args.runs} each, interleaved; {args.jobs} cached jobs")
    print(f"bare Textual app, first frame:        median {b * 1000:6.1f} ms  min {min(bare) * 1000:6.1f} ms")
    print(f"tunedeck, first frame with cached rows: median {o * 1000:6.1f} ms  min {min(ours) * 1000:6.1f} ms")
    print(f"ratio (median): {o / b:.2f}x   ratio (min): {min(ours) / min(bare):.2f}x   target: <= 1.5x")
    print(f"rows in first frame: {report.get('rows')} (from {report.get('source')}); "
          f"heavy modules loaded by then: {report.get('heavy') or 'none'}")


if __name__ == "__main__":
    main()
