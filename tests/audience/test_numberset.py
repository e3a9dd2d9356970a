"""NumberSet: the first of a number wins, in memory and once spilled to its file."""

from __future__ import annotations

import gc
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from runner.audience import numberset
from runner.audience.numberset import NumberSet
from runner.errors import RecipientError


@pytest.fixture(autouse=True)
def _own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary directory, for these tests: ours, to list."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def scratch() -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob("campaign-runner-numbers-*"))


@pytest.mark.parametrize("limit", [1, 3, 1000])
def test_the_first_of_a_number_wins_across_batches_and_spills(limit: int) -> None:
    with NumberSet(limit) as seen:
        assert seen.add_new([5, 6, 5, 7]) == [True, True, False, True]
        assert seen.add_new([8, 6, 9, 9]) == [True, False, True, False]
        assert seen.add_new([]) == []
        assert seen.add_new([7, 10, 5, 11, 8]) == [False, True, False, True, False]
        assert seen.contains([5, 12, 11, 4, 10]) == [True, False, True, False, True]
        assert (seen.folder is not None) == (limit < 1000)
    assert scratch() == []


def test_no_file_below_the_limit() -> None:
    with NumberSet(4) as seen:
        seen.add_new([1, 2, 3])
        assert seen.folder is None and scratch() == []
        seen.add_new([4])
        assert seen.folder is not None and scratch() == [seen.folder]
        assert (seen.folder / "numbers.db").is_file()


def test_false_hits_of_the_bitmap_are_asked_of_the_file() -> None:
    # 7 bits for hundreds of numbers: nearly every lookup is a false hit
    numbers = [34612000000 + 7 * i for i in range(300)]
    others = [n + 1 for n in numbers]
    with NumberSet(50, bitmap_bits=7) as seen:
        assert seen.add_new(numbers) == [True] * 300
        assert seen.contains(numbers[::-1]) == [True] * 300
        assert seen.contains(others) == [False] * 300
        assert seen.add_new([*others, *numbers]) == [True] * 300 + [False] * 300


def test_lookups_without_json_each_give_the_same_answers() -> None:
    # SQLite builds without JSON: one placeholder per number, in batches
    numbers = list(range(10**9, 10**9 + 2 * numberset.BATCH + 5))
    with NumberSet(10) as seen:
        seen.add(numbers[:5])
        seen._json = False  # as _connection finds it on such a build
        assert seen.add_new(numbers) == [False] * 5 + [True] * (len(numbers) - 5)
        assert seen.contains([numbers[-1], 1, numbers[0]]) == [True, False, True]


def test_add_takes_repeats_and_any_iterable() -> None:
    with NumberSet(3) as seen:
        seen.add(iter([1, 2, 2, 3, 1, 4, 5]))
        assert bool(seen) and seen.folder is not None
        assert seen.contains([1, 2, 3, 4, 5, 6]) == [True] * 5 + [False]
    with NumberSet(3) as empty:
        empty.add([])
        assert not empty and empty.contains([1]) == [False]


def test_the_folder_is_removed_on_an_error_and_when_collected() -> None:
    with pytest.raises(KeyboardInterrupt), NumberSet(2) as seen:
        seen.add_new([1, 2, 3])
        assert scratch() != []
        raise KeyboardInterrupt
    assert scratch() == []
    forgotten = NumberSet(2)
    forgotten.add_new([1, 2, 3])
    assert scratch() != []
    del forgotten
    gc.collect()
    assert scratch() == []


def _ask(seen: NumberSet, keys: list[int], conn: Any) -> None:
    conn.send(seen.contains(keys))
    seen.close()  # in a worker: its own connection only, never the file


def test_a_forked_worker_reads_the_file_and_leaves_it() -> None:
    ctx = multiprocessing.get_context("fork")
    with NumberSet(3) as seen:
        seen.add(range(100, 110))
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_ask, args=(seen, [99, 100, 109, 110], child))
        proc.start()
        assert parent.recv() == [False, True, True, False]
        proc.join(timeout=10)
        assert proc.exitcode == 0
        folder = seen.folder
        assert folder is not None and (folder / "numbers.db").is_file()
        assert seen.add_new([109, 111]) == [False, True]
    assert not folder.exists()


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        NumberSet(0)


def test_a_temporary_folder_that_cannot_be_made_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with NumberSet(2) as seen:
        assert seen.add_new([1]) == [True]  # in memory: no file needed yet
        with pytest.raises(RecipientError, match=r"temporary file in .*gone: "):
            seen.add_new([2])


def test_a_killed_process_s_folder_is_removed_by_the_next_spill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kill -9`` (or SIGTERM to ``preview``) leaves the folder behind: the next
    process to make its own removes those of processes no longer alive, and only
    those."""
    import subprocess

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])
    gone.wait()
    tmp = tmp_path
    dead = tmp / f"campaign-runner-numbers-{gone.pid}-x1"
    live = tmp / f"campaign-runner-numbers-{os.getppid()}-x2"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "numbers.db").write_bytes(b"")
    with NumberSet(2) as seen:
        seen.add_new([1, 2, 3])
        assert seen.folder is not None and seen.folder.name.startswith(
            f"campaign-runner-numbers-{os.getpid()}-"
        )
        assert not dead.exists()
        assert live.exists()
    assert sorted(tmp.glob("campaign-runner-numbers-*")) == [live]
