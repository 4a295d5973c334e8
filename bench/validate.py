#!/usr/bin/env python3
"""Benchmark of `tunedeck data validate` against the cookbook procedure; prints figures.

Generates an SFT file of about --size-mb MB with tunedeck.core.datasets.synth (in a temp
dir, deleted afterwards), then times, on that same file, in one run:
  - ours: `python -m tunedeck.cli.main data validate FILE --json` (a fresh process, so start-up,
    imports and the tokenizer load are included, as they are for the reference);
  - the reference: `python ../shared/bench/reference_validate.py FILE`.
Prints wall times, the ratio, MB/s, peak RSS (the largest single process, from wait4's
rusage, which covers our worker processes; and our whole process tree, PSS and RSS sampled
from /proc every 20 ms), and checks that both report the same billed tokens (and p50/p95).

Targets: ours at least 5x faster with the same billed tokens; RSS under 200 MB at
any size. `--size-mb 1024` measures RSS on a 1 GB file; the reference is skipped above
300 MB (it holds the whole file in memory) unless --with-reference is given.

usage: .venv/bin/python bench/validate.py [--size-mb 150] [--repeat 1] [--workers 2] [--with-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tunedeck.core.datasets.synth import write_dataset

HERE = Path(__file__).resolve()
# The cookbook procedure lives outside the repository; the benchmark runs it only when present.
REFERENCE = HERE.parents[2] / "shared" / "bench" / "reference_validate.py"
BYTES_PER_EXAMPLE = 749  # synth sft, measured
REFERENCE_CAP = 16_385  # the reference bills examples at this cap; ours at the model's


def tree_memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of `pid` and all its descendants, in kB. RSS counts pages shared between
    the processes (the tokenizer tables forked workers inherit) once per process; PSS
    divides them among their sharers, so it sums to the memory really used."""
    rss = pss = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return rss, pss


def run(cmd: list[str]) -> dict:
    """Run `cmd`; wall time, stdout, peak RSS of the largest process and of the tree."""
    peak_rss = peak_pss = 0
    done = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sample() -> None:
        nonlocal peak_rss, peak_pss
        while not done.is_set():
            rss, pss = tree_memory_kb(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "rc": proc.returncode,
        "out": out.decode("utf-8", "replace"),
        "err": err.decode("utf-8", "replace"),
        "max_process_rss_mb": usage.ru_maxrss / 1024,
        "tree_rss_mb": peak_rss / 1024,
        "tree_pss_mb": peak_pss / 1024,
    }


def reference_figures(text: str) -> dict:
    billed = re.search(r"billing tokens (\d+)", text)
    dist = re.search(r"tokens per example: min (\d+) max (\d+) mean [\d.]+ median (\d+) p5 (\d+) p95 (\d+)", text)
    examples = re.search(r"^examples (\d+)", text, re.M)
    return {
        "billed": int(billed.group(1)) if billed else None,
        "max": int(dist.group(2)) if dist else None,
        "p50": int(dist.group(3)) if dist else None,
        "p95": int(dist.group(5)) if dist else None,
        "examples": int(examples.group(1)) if examples else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=150)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs; the best time of each side counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--with-reference", action="store_true", help="run the reference even above 300 MB")
    parser.add_argument("--model", default="gpt-4o-mini-2024-07-18", help="an o200k_base model, like the reference")
    args = parser.parse_args()
    if not REFERENCE.is_file():
        print(f"needs {REFERENCE} (the cookbook procedure to compare against)", file=sys.stderr)
        return 2
    n = max(10, int(args.size_mb * 1e6 / BYTES_PER_EXAMPLE))
    with_reference = args.size_mb <= 300 or args.with_reference
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as tmp:
        path = Path(tmp) / "train.jsonl"
        t = time.perf_counter()
        write_dataset("sft", n, path)
        size = path.stat().st_size
        print(f"file      {size / 1e6:,.1f} MB, {n:,} SFT examples (synth sft {n}, {time.perf_counter() - t:.1f} s)")
        print(f"machine   {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
        ours_cmd = [sys.executable, "-m", "tunedeck.cli.main", "data", "validate", str(path), "--json",
                    "--model", args.model, "--workers", str(args.workers)]
        ref_cmd = [sys.executable, str(REFERENCE), str(path)]
        ours_runs, ref_runs = [], []
        for _ in range(args.repeat):
            ours_runs.append(run(ours_cmd))
            if with_reference:
                ref_runs.append(run(ref_cmd))
        ours = min(ours_runs, key=lambda r: r["wall"])
        if ours["rc"] not in (0, 1):
            print(ours["err"], file=sys.stderr)
            return 1
        report = json.loads(ours["out"])
        tokens = report["tokens"]
        print(
            f"ours      {ours['wall']:6.2f} s  {size / 1e6 / ours['wall']:7.1f} MB/s  "
            f"peak RSS {ours['max_process_rss_mb']:.0f} MB largest process; all processes "
            f"{ours['tree_pss_mb']:.0f} MB PSS ({ours['tree_rss_mb']:.0f} MB RSS summed, shared pages counted per process)"
        )
        print(f"          {args.workers} workers; exit {ours['rc']}, {report['error_count']} errors")
        print(
            f"          billed {tokens['billed']:,} tokens, p50 {tokens['p50']}, p95 {tokens['p95']}, "
            f"max {tokens['max_example']}, {report['examples']:,} examples"
        )
        if not ref_runs:
            print("reference skipped (it loads the whole file into memory); --with-reference to run it")
            return 0
        ref = min(ref_runs, key=lambda r: r["wall"])
        figures = reference_figures(ref["out"])
        print(
            f"reference {ref['wall']:6.2f} s  {size / 1e6 / ref['wall']:7.1f} MB/s  "
            f"peak RSS {ref['max_process_rss_mb']:.0f} MB"
        )
        print(
            f"          billed {figures['billed']:,} tokens, p50 {figures['p50']}, p95 {figures['p95']}, "
            f"max {figures['max']}, {figures['examples']:,} examples"
        )
        ratio = ref["wall"] / ours["wall"]
        same = figures["billed"] == tokens["billed"]
        capped = (figures["max"] or 0) > REFERENCE_CAP
        print(f"ratio     {ratio:.1f}x faster (target >= 5x)  {'OK' if ratio >= 5 else 'BELOW TARGET'}")
        print(
            f"tokens    billed {'equal' if same else 'DIFFERENT'}; p50/p95 "
            f"{'equal' if (figures['p50'], figures['p95']) == (tokens['p50'], tokens['p95']) else 'DIFFERENT'}"
            + ("  (note: examples over 16,385 tokens; the reference caps there)" if capped else "")
        )
        if args.repeat > 1:
            print(f"all runs  ours {[round(r['wall'], 2) for r in ours_runs]}  reference {[round(r['wall'], 2) for r in ref_runs]}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
