"""hiper.files: a write interrupted anywhere before its rename leaves the old contents and no
temporary; a finished one leaves the new contents, flushed to disk."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hiper import files


def umasked(mode: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def count_fsyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = os.fsync

    def counted(fd):
        calls.append(fd)
        return original(fd)

    monkeypatch.setattr(os, "fsync", counted)
    return calls


# ---------------------------------------------------------------------------- files
def test_replace_bytes_creates_then_replaces_with_the_mode_of_a_new_file(tmp_path):
    path = tmp_path / "a.json"
    files.replace_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    assert path.stat().st_mode & 0o777 == umasked(0o666)  # not a temporary's private 0600
    files.replace_bytes(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(tmp_path) == ["a.json"]


def test_replace_json_round_trips(tmp_path):
    path = tmp_path / "table.json"
    files.replace_json(path, {"boil": {"train": [1, 2]}}, indent=1)
    assert json.loads(path.read_text()) == {"boil": {"train": [1, 2]}}


@pytest.mark.parametrize("failure", [OSError, KeyboardInterrupt])
def test_a_write_that_fails_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"old")

    def fail(fd):
        raise failure("injected: the disk is full")

    monkeypatch.setattr(os, "fsync", fail)  # replace_bytes writes, then flushes, then renames
    with pytest.raises(failure):
        files.replace_bytes(path, b"new contents")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["metrics.jsonl"]


@pytest.mark.parametrize("failure", [OSError, KeyboardInterrupt])
def test_a_writer_that_raises_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old weights")

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new we")
        raise failure("injected")

    with pytest.raises(failure):
        files.replace_file(path, half)
    assert path.read_bytes() == b"old weights" and os.listdir(tmp_path) == ["model.safetensors"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a"
    path.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("injected")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="injected"):
        files.replace_bytes(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a"]


def test_replace_file_gives_the_writer_a_path_beside_the_target(tmp_path):
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("new")

    files.replace_file(tmp_path / "x.bin", write)
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".x.bin.tmp-")
    assert (tmp_path / "x.bin").read_text() == "new" and os.listdir(tmp_path) == ["x.bin"]


def test_durable_writes_flush_the_file_and_the_directory(tmp_path, monkeypatch):
    calls = count_fsyncs(monkeypatch)
    files.replace_bytes(tmp_path / "a", b"x")
    assert len(calls) == 2  # the data, then the directory entry of the rename
    files.replace_file(tmp_path / "b", lambda tmp: tmp.write_bytes(b"y"))
    assert len(calls) == 4
    files.replace_bytes(tmp_path / "c", b"z", durable=False)
    files.replace_file(tmp_path / "d", lambda tmp: tmp.write_bytes(b"w"), durable=False)
    assert len(calls) == 4


# ---------------------------------------------------------------------------- directories
def fill(text: str):
    def write(directory: Path) -> None:
        (directory / "sub").mkdir()
        (directory / "sub" / "weights").write_text(text)
        (directory / "config.json").write_text("{}")
    return write


def test_replace_directory_creates_and_replaces(tmp_path, monkeypatch):
    out = tmp_path / "deep" / "model"
    calls = count_fsyncs(monkeypatch)
    files.replace_directory(out, fill("first"))
    assert (out / "sub" / "weights").read_text() == "first"
    assert len(calls) == 2 + 2 + 1  # two files, two directories, then the parent
    assert out.stat().st_mode & 0o777 == umasked(0o777)  # what any new directory gets
    files.replace_directory(out, fill("second"))
    assert (out / "sub" / "weights").read_text() == "second" and os.listdir(out.parent) == ["model"]


@pytest.mark.parametrize("failure", [OSError, KeyboardInterrupt])
def test_an_interrupted_directory_write_keeps_the_old_directory(tmp_path, failure):
    out = tmp_path / "model"
    files.replace_directory(out, fill("first"))

    def half(directory: Path) -> None:
        (directory / "config.json").write_text("{")
        raise failure("injected")

    with pytest.raises(failure):
        files.replace_directory(out, half)
    assert (out / "sub" / "weights").read_text() == "first" and os.listdir(tmp_path) == ["model"]
    with pytest.raises(failure):
        files.replace_directory(tmp_path / "new", half)
    assert os.listdir(tmp_path) == ["model"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    out = tmp_path / "model"
    files.replace_directory(out, fill("first"))
    original, calls = os.replace, []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new directory into place, after the old one went aside
            raise OSError("injected")
        return original(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="injected"):
        files.replace_directory(out, fill("second"))
    assert (out / "sub" / "weights").read_text() == "first" and os.listdir(tmp_path) == ["model"]


def test_replace_false_refuses_an_existing_directory_but_an_empty_one(tmp_path):
    out = tmp_path / "model"
    files.replace_directory(out, fill("first"), replace=False)
    with pytest.raises(FileExistsError):
        files.replace_directory(out, fill("second"), replace=False)
    assert (out / "sub" / "weights").read_text() == "first" and os.listdir(tmp_path) == ["model"]
    empty = tmp_path / "empty"
    empty.mkdir()
    files.replace_directory(empty, fill("third"), replace=False)
    assert (empty / "sub" / "weights").read_text() == "third"


def test_remove_leftovers_removes_only_the_targets_temporaries(tmp_path):
    (tmp_path / ".out.tmp-killed").mkdir()
    (tmp_path / ".out.old-123").mkdir()
    (tmp_path / ".out.tmp-file").write_text("")
    (tmp_path / ".other.tmp-1").mkdir()
    (tmp_path / "out").mkdir()
    files.remove_leftovers(tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-1", "out"]


# ---------------------------------------------------------------------------- the cache
def test_cache_file_is_under_hiper_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPER_CACHE", str(tmp_path / "cache"))
    path = files.cache_file("scienceworld/variations-1.json")
    assert path == tmp_path / "cache" / "scienceworld" / "variations-1.json" and path.parent.is_dir()
    from hiper import models

    assert models.cache_dir() == tmp_path / "cache"  # the one cache directory, kept importable there
