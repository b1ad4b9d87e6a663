"""Atomic folder writes: readers never see a partial folder, parallel writers do not collide."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from peft_core.checkpoints import atomic_directory_write


def _writer(content: str):
    def write(tmp):
        (tmp / "a.txt").write_text(content)
        (tmp / "b.txt").write_text(content)

    return write


def test_parallel_writers_of_one_folder_all_succeed(tmp_path):
    target = tmp_path / "prepared"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: atomic_directory_write(target, _writer("same")), range(32)))
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
    assert (target / "a.txt").read_text() == (target / "b.txt").read_text() == "same"


def test_failed_write_leaves_no_final_folder(tmp_path):
    def broken(tmp):
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_directory_write(tmp_path / "adapter", broken)
    assert list(tmp_path.iterdir()) == []  # no final folder, and nothing left aside


def test_a_failed_rewrite_leaves_the_folder_as_it_was(tmp_path):
    atomic_directory_write(tmp_path / "adapter", _writer("first"))

    def broken(tmp):
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_directory_write(tmp_path / "adapter", broken)
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    assert (tmp_path / "adapter" / "a.txt").read_text() == "first"
