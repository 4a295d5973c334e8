"""Evaluation results screen benchmark: a finished run of N examples x 2 models.

Figures (the app headless, `run_test`, 120x36, offline on its cache):
- load: from pushing the results screen to its first full draw (scores, pairs, rows);
- filter: each `f` (all -> failures -> disagreements -> flipped -> all), from the key to
  the table redrawn;
- resize: a terminal resize to the table refitted (after the 0.1 s debounce) and drawn;
- UI stalls: the longest and the 99th-percentile lateness of a 5 ms heartbeat on the UI
  event loop over all of the above (what a keypress would wait for at worst).

The run is written straight to the cache through the evaluation store (no model is asked):
the base model passes a third of the examples, the fine-tuned one five in six.

usage: python bench/eval_results.py [--examples 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

HEARTBEAT_S = 0.005


PHASE = ["load"]
"""The phase the heartbeat is in (each stall is counted against it)."""


async def heartbeat(lateness: list[float], stop: asyncio.Event, by_phase: dict[str, float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(HEARTBEAT_S)
        late = time.perf_counter() - before - HEARTBEAT_S
        lateness.append(late)
        by_phase[PHASE[0]] = max(by_phase.get(PHASE[0], 0.0), late)


async def seed_run(paths, data: Path, examples: int) -> str:
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.evaluate.records import EvalSettings, ExampleResult, ModelSpec

    service = await open_service(paths=paths)
    try:
        evaluations = service.evaluations
        models = (ModelSpec("gpt-4o-mini-2024-07-18", "base", "base"), ModelSpec("ft:gpt-4o-mini:acme::x1", "fine-tuned", "fine_tuned"))
        info = await evaluations.create(EvalSettings(str(data), "", models))
        read = await evaluations.examples(info.id)
        for example in read.examples:
            for spec, passes in ((models[0], example.index % 3 == 0), (models[1], example.index % 6 != 1)):
                answer = example.reference if passes else "something else"
                await evaluations.store.put_result(
                    info.id,
                    ExampleResult(spec.label, example.index, answer, float(passes), passes, {}, None, None, 120, 8, 0.4, time.time()),
                )
        await evaluations.store.set_status(info.id, "finished")
        return info.id
    finally:
        await service.close()


async def measure(paths, run_id: str) -> dict[str, list[float]]:
    from tunedeck.core.bootstrap import open_service
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.eval_results import EvalResultsScreen

    app = TunedeckApp(lambda: open_service(paths=paths), poll=False, connect=False)
    figures: dict[str, list[float]] = {"load": [], "filter": [], "resize": [], "stall": []}
    by_phase: dict[str, float] = {}
    async with app.run_test(size=(120, 36)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        lateness: list[float] = []
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(lateness, stop, by_phase))

        async def until(check) -> None:
            while not check():
                await asyncio.sleep(0.001)
            await pilot.pause()

        started = time.perf_counter()
        screen = EvalResultsScreen(run_id)
        app.push_screen(screen)
        await until(lambda: screen.loads >= 1 and screen.table.row_count > 0)
        figures["load"].append(time.perf_counter() - started)

        PHASE[0] = "filter"
        for _ in range(4):
            before = screen.filter
            started = time.perf_counter()
            await pilot.press("f")
            await until(lambda: screen.filter != before)
            figures["filter"].append(time.perf_counter() - started)

        PHASE[0] = "resize"
        for width in (100, 120, 90, 120):
            fits = screen.fits
            started = time.perf_counter()
            await pilot.resize_terminal(width, 36)
            await until(lambda: screen.fits > fits)
            figures["resize"].append(time.perf_counter() - started)

        stop.set()
        await beat
        figures["stall"] = lateness
        figures["worst"] = [by_phase.get(name, 0.0) for name in ("load", "filter", "resize")]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    args = parser.parse_args()

    from tunedeck.core.datasets.synth import write_dataset
    from tunedeck.core.paths import AppPaths

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        paths = AppPaths(config_dir=root / "config", cache_dir=root / "cache", data_dir=root / "data")
        data = root / "held_out.jsonl"
        write_dataset("sft", args.examples, data, seed=7, learnable=True)
        started = time.perf_counter()
        run_id = asyncio.run(seed_run(paths, data, args.examples))
        print(f"run of {args.examples} examples x 2 models written in {time.perf_counter() - started:.1f} s")
        figures = asyncio.run(measure(paths, run_id))

    def ms(values: list[float]) -> str:
        return ", ".join(f"{v * 1000:.0f}" for v in values)

    print(f"load:   {ms(figures['load'])} ms (push to first full draw)")
    print(f"filter: {ms(figures['filter'])} ms (each f, key to redraw)")
    print(f"resize: {ms(figures['resize'])} ms (each resize to refit and redraw, 100 ms debounce included)")
    stall = sorted(figures["stall"])
    if stall:
        p99 = stall[int(len(stall) * 0.99) - 1] if len(stall) >= 100 else stall[-1]
        worst = figures["worst"]
        print(f"longest stall while loading {worst[0] * 1000:.0f} ms, filtering {worst[1] * 1000:.0f} ms, resizing {worst[2] * 1000:.0f} ms")
        print(f"UI stalls: longest {stall[-1] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, median {statistics.median(stall) * 1000:.1f} ms over {len(stall)} beats")


if __name__ == "__main__":
    main()
