"""The line index, the streamed search, the cleaned copy, recent files and the stats sample:
the core under the dataset browser (no Textual here)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import generate_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from tunedeck.core.cache import Cache
from tunedeck.core.cleancopy import CleanCopyError, clean_copy_path, write_clean_copy
from tunedeck.core.datasample import sample
from tunedeck.core.lineindex import LineIndex
from tunedeck.core.linesearch import SearchMatches, search
from tunedeck.core.recent import recent_files, remember_file


def expected_lines(data: bytes) -> list[bytes]:
    """What a line is: split on newlines, a final newline starts no line, a CRLF's CR goes."""
    if not data:
        return []
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    return [p.removesuffix(b"\r") for p in parts]


def indexed(tmp_path: Path, data: bytes, first: int = 16, step: int = 7) -> LineIndex:
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    index = LineIndex.open(path, first_batch=first)
    while not index.scan_step(step):
        pass
    return index


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"a",
        b"a\n",
        b"a\nb",
        b"a\r\nb\r\n",
        b"a\n\n\nb\n",
        b"\r\n\r\n",
        b'{"x": 1}\n' * 50 + b'{"last": true}',
    ],
)
def test_lines_are_what_splitting_gives(tmp_path, data):
    index = indexed(tmp_path, data)
    assert index.complete
    lines = expected_lines(data)
    assert index.line_count == len(lines)
    assert [index.raw(n) for n in range(1, len(lines) + 1)] == lines
    with pytest.raises(IndexError):
        index.raw(len(lines) + 1)


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"\n", b"\r\n", b"{}", b"\xc3\xa9", b"x" * 40])).map(b"".join),
    first=st.integers(1, 64),
    step=st.integers(1, 64),
)
def test_any_file_any_step_sizes(tmp_path_factory, data, first, step):
    index = indexed(tmp_path_factory.mktemp("idx"), data, first, step)
    lines = expected_lines(data)
    assert [index.raw(n) for n in range(1, index.line_count + 1)] == lines
    offset = 0
    for number, line in enumerate(data.split(b"\n")[: len(lines)], start=1):
        assert index.line_at_offset(offset) == number
        offset += len(line) + 1
    index.close()


def test_the_numpy_scan_and_the_first_batch_agree(tmp_path):
    # Background steps (bigger than the first batch) use numpy; the first batch does not.
    data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (n, b"y" * (n % 300)) for n in range(6000))
    small = indexed(tmp_path, data, first=10_000, step=10_000)
    path = tmp_path / "data.jsonl"
    big = LineIndex.open(path, first_batch=1000)
    assert big.build(step_bytes=300_000)
    assert big.line_count == small.line_count == 6000
    assert all(big.span(n) == small.span(n) for n in range(1, 6001, 37))


def test_the_first_page_is_there_before_the_scan(tmp_path):
    path = generate_dataset("sft", 2000, tmp_path / "train.jsonl")
    index = LineIndex.open(path, first_batch=4096)
    assert not index.complete and 0 < index.line_count < 20
    assert json.loads(index.raw(1))["messages"]
    with pytest.raises(IndexError):
        index.raw(index.line_count + 1)  # its end is not known yet
    assert index.build()
    assert index.line_count == 2000


def test_long_lines_are_cut_for_display_and_whole_in_raw(tmp_path):
    long = b'{"messages": [{"role": "user", "content": "' + b"z" * 300_000 + b'"}]}'
    index = indexed(tmp_path, b"\xef\xbb\xbf{}\n" + long + b"\nbad \xff byte\n", first=64, step=100_000)
    assert index.display(1).text == "{}"  # the BOM is not shown
    shown = index.display(2, limit=1000)
    assert shown.truncated and len(shown.text) == 1000 and shown.length == len(long)
    assert index.raw(2) == long
    assert index.display(3).text == "bad \ufffd byte" and not index.display(3).truncated


def test_reads_after_close_fail_cleanly(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"a\nb\n" * 100)
    index = LineIndex.open(path, first_batch=8)
    index.close()
    with pytest.raises(ValueError):
        index.raw(1)
    assert index.closed and not index.build() and not index.complete


# -- search ------------------------------------------------------------------------------------


def test_search_finds_each_matching_line_once(tmp_path):
    rows = [json.dumps({"messages": [{"role": "user", "content": text}]}) for text in (
        'refund refund please', "nothing", 'say "hi"', "café", "Refund", "x",
    )]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(rows) + "\n")  # json.dumps escapes é as \u00e9
    index = LineIndex.open(path)
    assert list(search(index, "refund").lines) == [1, 5]  # smart case: lower case matches both
    assert list(search(index, "Refund").lines) == [5]
    assert list(search(index, 'say "hi"').lines) == [3]  # found in its escaped form
    assert list(search(index, "café").lines) == [4]
    assert search(index, "absent").count == 0


def test_search_wraps_from_the_start_line_and_reports_progress(tmp_path):
    path = generate_dataset("sft", 3000, tmp_path / "train.jsonl")
    index = LineIndex.open(path)
    index.build()
    everywhere = [n for n in range(1, 3001) if b"refund" in index.raw(n).lower()]
    reports = []
    result = search(index, "refund", start_line=1500, on_progress=reports.append, chunk_bytes=4096, report_every_s=0)
    after = [n for n in everywhere if n >= 1500]
    assert list(result.lines) == after + [n for n in everywhere if n < 1500]
    assert sum(len(r.lines) for r in reports) == len(everywhere)
    assert reports[-1].scanned_bytes == index.size and reports[-1].wrapped

    matches = SearchMatches("refund", 1500)
    for report in reports:
        matches.add(report)
    assert matches.count == len(everywhere) and matches.first_after_start == after[0]
    assert list(matches.lines()) == everywhere
    assert matches.next_after(everywhere[-1]) == everywhere[0]  # wraps
    assert matches.previous_before(everywhere[0]) == everywhere[-1]
    assert everywhere[3] in matches and 0 not in matches


def test_search_stops_when_cancelled(tmp_path):
    path = generate_dataset("sft", 3000, tmp_path / "train.jsonl")
    index = LineIndex.open(path)
    index.build()
    chunks = []
    result = search(index, "e", cancelled=lambda: len(chunks) >= 2, on_progress=chunks.append, chunk_bytes=2048, report_every_s=0)
    assert result.cancelled and 0 < result.count < 3000


def test_a_search_waiting_for_the_index_can_be_cancelled(tmp_path):
    path = generate_dataset("sft", 3000, tmp_path / "train.jsonl")
    index = LineIndex.open(path, first_batch=1024)  # the rest is never scanned
    cancel = threading.Event()
    done = []
    worker = threading.Thread(target=lambda: done.append(search(index, "billing", cancelled=cancel.is_set)))
    worker.start()
    cancel.set()
    worker.join(5)
    assert done and done[0].cancelled


# -- cleaned copy --------------------------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False])
def test_clean_copy_leaves_out_invalid_lines_and_never_overwrites(tmp_path, known):
    path = generate_dataset("sft", 100, tmp_path / "train.jsonl", "--bad-every", "30")
    original = path.read_bytes()
    result = write_clean_copy(path, "sft", bad_lines=[30, 60, 90] if known else None)
    assert result.target == tmp_path / "train.clean.jsonl" == clean_copy_path(path)
    assert (result.kept, result.dropped, result.dropped_lines) == (97, 3, [30, 60, 90])
    kept = result.target.read_bytes().splitlines()
    assert kept == [line for n, line in enumerate(original.splitlines(), 1) if n not in (30, 60, 90)]
    assert path.read_bytes() == original
    with pytest.raises(CleanCopyError, match="exists"):
        write_clean_copy(path, "sft", bad_lines=[])
    assert result.target.read_bytes().splitlines() == kept


# -- recent files and the stats sample -----------------------------------------------------------


async def test_recent_files_newest_first_without_duplicates(tmp_path):
    cache = await Cache.open(tmp_path / "cache.sqlite3")
    try:
        assert await recent_files(cache) == []
        for name in ("a.jsonl", "b.jsonl", "a.jsonl"):
            await remember_file(cache, tmp_path / name)
        assert await recent_files(cache) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
        await cache.set_meta("recent_datasets", "not json")
        assert await recent_files(cache) == []
    finally:
        await cache.close()


def test_sample_reads_labels_and_histograms(tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    index = LineIndex.open(path)
    index.build()
    found = sample(index, "sft", "o200k_base", limit=200)
    assert found.examples == 200 and found.sampled
    assert sum(found.token_histogram.values()) == 200
    assert set(found.messages_histogram) <= {3, 5, 7}
    assert found.labels and set(found.labels) <= {"billing", "shipping", "account", "technical", "returns", "other"}
    assert found.labels_from == "the last assistant answer"
