"""Dataset browser benchmark: a ~1 GB JSONL, time to the first page, jumps, index, search.

Targets: the first page of a 1 GB file in under 200 ms; nothing blocks the UI
thread for more than 50 ms. The app runs headless (`run_test`, 120x36) with the dataset
engine validating in the background, as a user would have it. Figures:

- first page: from pushing the screen to the first rows drawn, and to the first frame after
  the call returned (the file is opened and its first 256 KB indexed inside that time);
- jumps to lines at 10/50/90% of the file: requested before the index is complete (each
  waits for the scan to get there) and after (the jump alone), until the row is drawn;
- index: the background scan of the whole file; search: a rare word through the file;
- UI stalls: the longest and the 99th-percentile lateness of a 5 ms heartbeat on the UI
  event loop over the whole run (what a keypress would wait for at worst).

usage: python bench/browse.py [--size-mb 1024] [--file PATH] [--keep] [--no-validate]
The generated file is written in a temporary folder and deleted afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tunedeck.core.datasets.synth import write_dataset

REPO = Path(__file__).resolve().parents[1]
BLOCK_EXAMPLES = 20_000
HEARTBEAT_S = 0.005
FREEZE = "--gc-freeze" in sys.argv


def write_big_file(path: Path, size_mb: int) -> int:
    """A block of generated SFT examples (some bad lines planted) repeated to `size_mb` MB."""
    block = path.with_suffix(".block")
    write_dataset("sft", BLOCK_EXAMPLES, block, bad_every=5000)
    data = block.read_bytes()
    block.unlink()
    copies = max(1, (size_mb * 1024 * 1024) // len(data))
    with path.open("wb") as out:
        for _ in range(copies):
            out.write(data)
    return copies * BLOCK_EXAMPLES


class Heartbeat:
    """Measures how late a 5 ms sleep on the UI loop wakes up (= how long the loop was busy)."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.phase = "start"
        self.worst: list[tuple[float, str]] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(HEARTBEAT_S)
            late = loop.time() - before - HEARTBEAT_S
            self.lateness.append(late)
            self.worst = sorted([*self.worst, (late, self.phase)], reverse=True)[:5]

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def watch_gc(self) -> None:
        """Record the longest garbage-collector pause (a stall no screen code causes)."""
        import gc

        self.gc_worst = (0.0, -1)
        began = [0.0]

        def timed(phase: str, info: dict) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                self.gc_worst = max(self.gc_worst, (time.perf_counter() - began[0], info["generation"]))

        gc.callbacks.append(timed)

    def summary(self) -> str:
        if not self.lateness:
            return "no samples"
        ordered = sorted(self.lateness)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        worst = ", ".join(f"{late * 1000:.0f} ms ({phase})" for late, phase in self.worst)
        pause, generation = self.gc_worst
        return (
            f"max {max(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms over {len(ordered):,} beats; worst: {worst}\n"
            f"                longest garbage-collector pause {pause * 1000:.1f} ms (generation {generation})"
        )


async def painted(screen, line: int, since: float, limit_s: float = 10.0) -> float:
    """Seconds from `since` until the cursor row showing `line` was drawn."""
    examples = screen.browser.examples
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        drawn = examples.cursor_painted
        if drawn is not None and drawn[0] == line and drawn[1] >= since:
            return drawn[1] - since
        await asyncio.sleep(0.001)
    raise TimeoutError(f"line {line} was not drawn within {limit_s} s: {screen.browser.describe()}, painted {examples.cursor_painted}, since {since}, pending {screen.browser.pending_jump}")


async def run(path: Path, lines: int, validate: bool) -> None:
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.paths import AppPaths
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.dataset import DatasetScreen

    home = Path(os.environ["TUNEDECK_HOME"])
    paths = AppPaths(config_dir=home / "config", cache_dir=home / "cache", data_dir=home / "data")
    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        import gc

        print(f"gc-tracked objects at the start: {len(gc.get_objects()):,}" + (" (frozen)" if FREEZE else ""))
        if FREEZE:
            gc.freeze()
        beat = Heartbeat()
        beat.watch_gc()
        beat.start()

        beat.phase = "open"
        started = time.perf_counter()
        screen = DatasetScreen(path, validate=validate)
        app.push_screen(screen)
        while not screen.is_mounted or screen.browser.examples.first_paint_at is None:
            await asyncio.sleep(0.001)
        first_page = screen.browser.examples.first_paint_at - started
        print(f"first page      {first_page * 1000:7.1f} ms  (open + first 256 KB indexed + rows drawn; index at {screen.browser.index.fraction:.0%})")

        beat.phase = "jumps while indexing"
        targets = [max(1, int(lines * share)) for share in (0.1, 0.5, 0.9)]
        for target in targets:
            asked = time.perf_counter()
            was = screen.browser.index.fraction
            screen.browser.goto_line(target)
            took = await painted(screen, target, asked)
            print(f"jump {target:>9,}  {took * 1000:7.1f} ms  (asked with the index at {was:.0%}: waits for the scan)")

        beat.phase = "indexing"
        while not screen.browser.index.complete:
            await asyncio.sleep(0.01)
        beat.phase = "jumps"
        print(f"index complete  {(time.perf_counter() - started):7.2f} s after opening ({screen.browser.index.line_count:,} lines)")

        for target in [*targets, 1, lines]:
            asked = time.perf_counter()
            screen.browser.goto_line(target)
            took = await painted(screen, target, asked)
            print(f"jump {target:>9,}  {took * 1000:7.1f} ms  (index complete)")

        beat.phase = "paging"
        screen.browser.goto_line(lines // 2)
        await painted(screen, lines // 2, time.perf_counter() - 1)
        steps = []
        for _ in range(20):
            asked = time.perf_counter()
            before = screen.browser.describe()["line"]
            screen.browser.examples.action_page(1)  # what pagedown runs (Pilot's press waits for an idle process)
            steps.append(await painted(screen, screen.browser.describe()["line"], asked))
            assert screen.browser.describe()["line"] > before
        print(f"page down       {statistics.median(steps) * 1000:7.1f} ms median, {max(steps) * 1000:.1f} ms max (20 pages)")

        beat.phase = "search"
        asked = time.perf_counter()
        screen.browser.start_search("zqxjv")  # absent: the whole file is read
        while not (screen.browser.search and screen.browser.search.finished):
            await asyncio.sleep(0.01)
        print(f"search          {time.perf_counter() - asked:7.2f} s for a word found nowhere (whole file)")

        beat.phase = "validating"
        if validate:
            while screen.browser.report is None and screen.browser.validation_fraction is not None:
                await asyncio.sleep(0.05)
            report = screen.browser.report
            if report is None:
                failures = [n.message for n in app._notifications]
                print(f"validation      failed: {failures}")
            else:
                print(f"validation      {time.perf_counter() - started:7.2f} s after opening ({report.error_count:,} errors, {report.examples:,} examples)")
        beat.stop()
        print(f"UI loop stalls  {beat.summary()}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--file", type=Path, help="benchmark this file instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--no-validate", action="store_true", help="browse without the engine running beside")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once the app has started (an experiment)")
    args = parser.parse_args(argv[1:])
    workdir = Path(tempfile.mkdtemp(prefix="tunedeck-browse-"))
    os.environ["TUNEDECK_HOME"] = str(workdir / "home")
    try:
        if args.file is not None:
            path = args.file.resolve()
            lines = sum(1 for _ in path.open("rb"))
        else:
            free = shutil.disk_usage(workdir).free
            if free < 3 * args.size_mb * 1024 * 1024:
                print(f"not enough free disk in {workdir}: {free / 1e9:.1f} GB", file=sys.stderr)
                return 2
            path = workdir / "big.jsonl"
            began = time.perf_counter()
            lines = write_big_file(path, args.size_mb)
            print(f"wrote {path.stat().st_size / 1e9:.2f} GB, {lines:,} lines in {time.perf_counter() - began:.1f} s")
        print(f"file            {path.stat().st_size / 1e9:.2f} GB, {lines:,} lines (page cache warm: just written or read)")
        asyncio.run(run(path, lines, validate=not args.no_validate))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":  # the guard matters: the validator's worker processes re-import this module
    sys.exit(main(sys.argv))
