"""Render the app's screens to SVG, headless, against a throwaway local backend.

    python scripts/screenshots.py [--text] [OUT_DIR]   (default: screenshots/ next to scripts/)

One job is trained to completion (with a validation file, so the chart has both curves)
and one is stopped mid-run; the script writes jobs.svg (the list), job.svg (the finished
job: fields, events, loss chart), job-overfitting.svg (a job that overfits: the verdict, the
best checkpoint), compare.svg (the two finished jobs side by side), job-running.svg (the
mid-run job), evaluate.svg (`E` on the finished job: base vs fine-tuned vs checkpoints),
eval-results.svg (its results, failures only), playground.svg (two models side by side),
launch.svg (the form),
preflight.svg (its pre-flight), grader-editor.svg (the RFT grader editor after a test run),
help.svg, dataset.svg (the browser on a file with a few bad lines, an error chosen),
dataset-stats.svg (its stats view) and job-transformer.svg (a tiny transformer mid-run, with
the `train` extra) (with --text, a plain-text .txt of each as well). Nothing touches the user's config, cache or keys: everything lives in a
temporary TUNEDECK_HOME that is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = (120, 36)


def write_dataset(path: Path, n: int, seed: int) -> Path:
    """A learnable SFT file of support tickets."""
    from tunedeck.core.datasets.synth import write_dataset as synthesize

    synthesize("sft", n, path, learnable=True, seed=seed)
    return path


def write_rft(path: Path) -> Path:
    from tunedeck.core.datasets import synth

    with contextlib.redirect_stderr(io.StringIO()):
        synth.main(["rft", "40", str(path), "--seed", "3"])
    return path


async def render(out_dir: Path, home: Path, text: bool = False) -> list[Path]:
    from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.launch.request import LaunchRequest
    from tunedeck.core.paths import AppPaths
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.screens.jobs import JobsTable
    from tunedeck.tui.textshot import screen_text

    train = write_dataset(home / "train.jsonl", 120, seed=1)
    valid = write_dataset(home / "valid.jsonl", 30, seed=2)
    paths = AppPaths(config_dir=home / "config", cache_dir=home / "cache", data_dir=home / "data")
    backend = LocalBackend(data_dir=home / "backend", auto_advance=False, models_dirs=[home / "models"])
    backend.start()
    written: list[Path] = []
    try:
        app = TunedeckApp(lambda: open_service(paths=paths, local_backend=backend), poll=False)
        async with app.run_test(size=SIZE) as pilot:

            async def settle() -> None:
                await app.workers.wait_for_complete()
                await pilot.pause()
                await pilot.pause()

            def shoot(name: str) -> None:
                target = out_dir / name
                target.write_text(app.export_screenshot(title=f"tunedeck: {name.removesuffix('.svg')}"), encoding="utf-8")
                written.append(target)
                if text:
                    target.with_suffix(".txt").write_text(screen_text(app), encoding="utf-8")

            await settle()
            assert app.service is not None and app.service.is_connected, app.state.connection_detail
            done = await app.service.launch(
                LaunchRequest(training_path=train, model=BUILTIN_BASE_MODEL, validation_path=valid)
            )
            await asyncio.to_thread(backend.run_until, done.id, "succeeded")
            overfit = await launch_overfitting_job(app, home)
            await asyncio.to_thread(backend.run_until, overfit.id, "succeeded")
            running = await app.service.launch(LaunchRequest(training_path=train, model=BUILTIN_BASE_MODEL))
            await asyncio.to_thread(backend.run_until, running.id, "running")
            await asyncio.to_thread(backend.advance, running.id, 150)
            await app.poll_now()
            await settle()

            table = app.screen.query_one(JobsTable)
            table.move_cursor(row=table.job_ids.index(running.id))
            await pilot.pause()
            shoot("jobs.svg")

            await open_job(app, settle, done.id)
            shoot("job.svg")
            app.pop_screen()
            await settle()

            await open_job(app, settle, overfit.id)
            shoot("job-overfitting.svg")
            app.pop_screen()
            await settle()

            for job_id in (done.id, overfit.id):  # mark both, then compare them
                table.move_cursor(row=table.job_ids.index(job_id))
                await pilot.press("space")
            await pilot.press("C")
            await settle()
            shoot("compare.svg")
            await pilot.press("escape")
            await settle()

            await shoot_evaluation(app, pilot, settle, shoot, done.id)

            await open_job(app, settle, running.id)
            shoot("job-running.svg")
            await pilot.press("question_mark")
            await pilot.pause()
            shoot("help.svg")
            await pilot.press("escape", "escape")
            await settle()

            await pilot.press("n")
            await settle()
            await pilot.press(*"train.jsonl")
            await settle()
            shoot("launch.svg")
            await pilot.press("ctrl+s")
            await settle()
            shoot("preflight.svg")
            await pilot.press("escape")
            await settle()
            for button in app.screen.query("#method RadioButton"):
                button.value = button.name == "reinforcement"
            app.screen.query_one("#training-path").value = str(write_rft(home / "rft.jsonl"))
            await settle()
            await pilot.press("ctrl+g")
            await settle()
            await pilot.press("ctrl+t")
            await settle()
            shoot("grader-editor.svg")
            await pilot.press("escape", "escape")
            await settle()

            await shoot_dataset(app, pilot, settle, shoot, home)
            await shoot_transformer_job(app, settle, shoot, backend, home, train, valid)
    finally:
        backend.stop()
    return written


async def shoot_evaluation(app, pilot, settle, shoot, job_id: str) -> None:
    """`E` on the finished job: base vs fine-tuned vs checkpoints on its validation file, then
    its results (the first failure chosen) and the playground on the same two models."""
    from tunedeck.tui.screens.evaluate import EvaluateScreen

    await open_job(app, settle, job_id)
    await pilot.press("E")
    await settle()
    screen = app.screen
    assert isinstance(screen, EvaluateScreen), screen
    for _ in range(200):  # the run's worker ends with the run; its messages land after
        await settle()
        info = screen.table.infos.get(screen.run_id) if screen.run_id else None
        if info is not None and info.status == "finished" and screen.summaries.get(info.id) and not app.state.evaluations:
            break
    shoot("evaluate.svg")
    await pilot.press("enter")
    await settle()
    await pilot.press("f")  # failures
    await settle()
    shoot("eval-results.svg")
    await pilot.press("escape", "escape")
    await settle()
    await pilot.press("t")  # the playground: the job's fine-tuned model against its base
    await settle()
    await pilot.press(*"my parcel never came, the courier lost it", "enter")
    await settle()
    await pilot.pause()
    shoot("playground.svg")
    await pilot.press("escape", "escape")
    await settle()


async def launch_overfitting_job(app, home: Path):
    """The recorded overfitting case (scripts/record_curves.py): 16 examples with 30% of their
    labels redrawn, 20 epochs; its validation loss turns up after epoch 6."""
    from record_curves import sft

    from tunedeck.backend import BUILTIN_BASE_MODEL
    from tunedeck.core.launch.request import LaunchRequest

    def write(rows: list[dict], name: str) -> Path:
        path = home / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    small = write(sft(16, 1, noise=0.3)(home), "small-noisy.jsonl")
    small_valid = write(sft(60, 2, noise=0.3)(home), "small-noisy-valid.jsonl")
    request = LaunchRequest(
        training_path=small,
        validation_path=small_valid,
        model=BUILTIN_BASE_MODEL,
        hyperparameters={"n_epochs": 20, "batch_size": 1},
        seed=1,
        suffix="overfit",
    )
    return await app.service.launch(request)


async def open_job(app, settle, job_id: str) -> None:
    """The Job screen of `job_id`, with the newest events polled in."""
    from tunedeck.tui.screens.job import JobScreen

    app.push_screen(JobScreen(job_id))
    await settle()
    await app.poll_now()
    await settle()


async def shoot_dataset(app, pilot, settle, shoot, home: Path) -> None:
    """The dataset browser on a generated file with a few bad lines, an error chosen."""
    from tunedeck.tui.screens.dataset import DatasetScreen

    path = home / "support.jsonl"
    from tunedeck.core.datasets.synth import write_dataset as synthesize

    synthesize("sft", 400, path, learnable=True, seed=3, bad_every=90)
    screen = DatasetScreen(path)
    app.push_screen(screen)
    await settle()
    await pilot.press("right_square_bracket", "right_square_bracket")  # the second error: a field is marked
    await settle()
    shoot("dataset.svg")
    await pilot.press("t")
    await settle()
    shoot("dataset-stats.svg")


async def shoot_transformer_job(app, settle, shoot, backend, home: Path, train: Path, valid: Path) -> None:
    """A transformer job mid-run (the tiny test model, full fine-tuning on CPU), when the
    `train` extra is installed."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        print("job-transformer.svg skipped: pip install '.[train]' first", file=sys.stderr)
        return
    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model
    from tunedeck.core.launch.request import LaunchRequest

    texts = [m["content"] for line in train.read_text().splitlines() for m in json.loads(line)["messages"]]
    build_tiny_model(home / "models" / "acme" / "tiny-qwen", texts)
    request = LaunchRequest(
        training_path=train,
        model="acme/tiny-qwen",
        validation_path=valid,
        batch_size=4,
        learning_rate_multiplier=250,
        options={"training_type": "full"},
    )
    job = await app.service.launch(request)
    await asyncio.to_thread(backend.run_until, job.id, "running")
    await asyncio.to_thread(backend.advance, job.id, 60)
    app.pop_screen()
    await settle()
    await open_job(app, settle, job.id)
    shoot("job-transformer.svg")
    await asyncio.to_thread(backend.run_until_settled)  # a clean stop: the worker finishes, nothing is killed


async def render_compute(out_dir: Path, home: Path, text: bool = False) -> list[Path]:
    """The compute view of a backend with two (pretend) GPUs: two tiny transformer jobs
    training, one on each, and a third waiting for a free one. Pretend GPUs train on the
    CPU and say so ("GPU (pretend)"); on a machine with GPUs the view lists them instead."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        print("compute.svg skipped: pip install '.[train]' first", file=sys.stderr)
        return []
    from tunedeck.backend import LocalBackend
    from tunedeck.backend.compute import detect_devices
    from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model
    from tunedeck.core.bootstrap import open_service
    from tunedeck.core.launch.request import LaunchRequest
    from tunedeck.core.paths import AppPaths
    from tunedeck.tui.app import TunedeckApp
    from tunedeck.tui.textshot import screen_text

    train = home / "train.jsonl"
    texts = [m["content"] for line in train.read_text().splitlines() for m in json.loads(line)["messages"]]
    build_tiny_model(home / "models" / "acme" / "tiny-qwen", texts)
    paths = AppPaths(config_dir=home / "config-compute", cache_dir=home / "cache-compute", data_dir=home / "data")
    devices = detect_devices({"TUNEDECK_DEVICES": "fake:2"})
    backend = LocalBackend(data_dir=home / "backend-compute", models_dirs=[home / "models"], devices=devices)
    backend.start()
    written: list[Path] = []
    try:
        app = TunedeckApp(lambda: open_service(paths=paths, local_backend=backend), poll=False)
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()
            request = LaunchRequest(training_path=train, model="acme/tiny-qwen", n_epochs=50, batch_size=4,
                                    options={"training_type": "full"})  # fmt: skip
            jobs = [await app.service.launch(request) for _ in range(3)]
            for _ in range(600):  # until two train and the third waits
                view = await app.service.compute()
                if sum(d.job is not None for d in view.devices) == 2 and view.waiting:
                    break
                await asyncio.sleep(0.1)
            for _ in range(600):  # and the two on the GPUs have loaded their model
                await app.poll_now()
                await app.workers.wait_for_complete()
                holders = {d.job for d in view.devices if d.job}
                if all(row.job.status == "running" for row in app.state.rows if row.job.id in holders):
                    break
                await asyncio.sleep(0.1)
            await pilot.press("w")
            await app.workers.wait_for_complete()
            await pilot.pause()
            target = out_dir / "compute.svg"
            target.write_text(app.export_screenshot(title="tunedeck: compute"), encoding="utf-8")
            written.append(target)
            if text:
                target.with_suffix(".txt").write_text(screen_text(app), encoding="utf-8")
            for job in jobs:
                await app.service.cancel(job.id)
    finally:
        backend.stop()
    return written


def main(argv: list[str]) -> int:
    text = "--text" in argv
    args = [a for a in argv[1:] if a != "--text"]
    out_dir = (Path(args[0]) if args else REPO / "screenshots").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tunedeck-shots-") as tmp:
        home = Path(tmp)
        os.environ["TUNEDECK_HOME"] = str(home)
        os.environ.pop("OPENAI_API_KEY", None)
        os.chdir(home)  # the launch form shows a path relative to here
        for path in asyncio.run(render(out_dir, home, text)) + asyncio.run(render_compute(out_dir, home, text)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
