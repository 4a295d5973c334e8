"""The core's side of the dataset screen's file actions: a clean copy that replaces a file
only when told to (and then only once it is whole), and the line each recent file was left at."""

from __future__ import annotations

import pytest
from conftest import generate_dataset

from tunedeck.core.cache import Cache
from tunedeck.core.cleancopy import CleanCopyError, write_clean_copy
from tunedeck.core.recent import MAX_RECENT, last_line, remember_file, remember_line


def test_a_clean_copy_overwrites_only_when_told_and_keeps_the_old_file_on_failure(tmp_path):
    path = generate_dataset("sft", 100, tmp_path / "train.jsonl", "--bad-every", "30")
    target = tmp_path / "mine.jsonl"
    target.write_text("mine\n")
    with pytest.raises(CleanCopyError, match="exists"):
        write_clean_copy(path, "sft", bad_lines=[30, 60, 90], target=target)
    assert target.read_text() == "mine\n"

    big = tmp_path / "big.jsonl"
    big.write_bytes(path.read_bytes() * 50)  # past the first cancellation check (every 4,096 lines)
    with pytest.raises(CleanCopyError, match="cancelled"):  # fails midway: the old file stays whole
        write_clean_copy(big, "sft", bad_lines=[30], target=target, overwrite=True, cancelled=lambda: True)
    assert target.read_text() == "mine\n" and not list(tmp_path.glob("*.part"))

    result = write_clean_copy(path, "sft", bad_lines=[30, 60, 90], target=target, overwrite=True)
    assert result.kept == 97 and len(target.read_bytes().splitlines()) == 97
    assert not list(tmp_path.glob("*.part"))


async def test_the_line_a_recent_file_was_left_at(tmp_path):
    cache = await Cache.open(tmp_path / "cache.sqlite3")
    try:
        first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        await remember_line(cache, first, 40)  # not a recent file: nothing kept
        assert await last_line(cache, first) is None
        await remember_file(cache, first)
        await remember_file(cache, second)
        await remember_line(cache, first, 40)
        await remember_line(cache, second, 7)
        assert (await last_line(cache, first), await last_line(cache, second)) == (40, 7)
        await remember_line(cache, first, 12)
        assert await last_line(cache, first) == 12

        for n in range(MAX_RECENT - 1):  # the first file falls off the recent list: its line goes too
            await remember_file(cache, tmp_path / f"other{n}.jsonl")
        await remember_line(cache, second, 8)
        assert (await last_line(cache, first), await last_line(cache, second)) == (None, 8)
        await cache.set_meta("recent_dataset_lines", "not json")
        assert await last_line(cache, second) is None
    finally:
        await cache.close()
