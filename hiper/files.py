"""Files that a crash leaves whole: the old contents or the new, never a mix, nor a torn file.

Every durable write in hiper goes through here:

    replace_bytes(path, data)       a file's new contents
    replace_json(path, value)       the same, as JSON
    replace_file(path, write)       `write(tmp)` fills a temporary file (for writers that take a
                                    path, like safetensors' save_file)
    replace_directory(path, write)  `write(tmp)` fills a temporary directory, which then takes
                                    the place of `path`

The new contents go to a temporary beside the target (same directory, so same file system:
the rename is atomic), are flushed to disk (fsync), and the temporary is renamed over the
target (os.replace); then the directory is flushed, which makes the rename itself durable.
Why fsync: a rename is atomic for the processes of a running system, but after a power cut
the file system may have persisted the rename before the data (ext4's delayed allocation, for
one), leaving an empty or torn file under the final name. An error, Ctrl-C included, removes
the temporary and leaves the target as it was; a kill leaves the temporary (named
`.NAME.tmp-*`, see `remove_leftovers`). `durable=False` skips the flushes where only
atomicity matters (scratch files nobody reads after a crash).

Also here: where hiper keeps its cache (`cache_dir`, `$HIPER_CACHE`). This module imports
nothing of hiper's.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "cache_file", "fsync_dir", "remove_leftovers", "replace_bytes", "replace_directory",
           "replace_file", "replace_json", "write_durably"]


# ---------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """hiper's cache directory: $HIPER_CACHE, default ~/.cache/hiper."""
    return Path(os.environ.get("HIPER_CACHE", Path.home() / ".cache" / "hiper"))


def cache_file(name: str) -> Path:
    """The path of `name` (may hold '/') in the cache directory; its directory is created."""
    path = cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------- flushing
def fsync_dir(path: str | os.PathLike) -> None:
    """Flushes a directory's entries (creations, renames, removals in it) to disk."""
    if os.name == "nt":  # Windows cannot open a directory; its renames are durable when they return
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())  # flushes the file's dirty pages, whichever descriptor wrote them


def _fsync_tree(root: Path) -> None:
    """Every file and directory under `root` (and `root`) flushed to disk."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if not path.is_symlink():
                _fsync_file(path)
        fsync_dir(directory)


def write_durably(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` in place and flushes it to disk before returning (for a file
    inside a directory that is itself renamed into place afterwards)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------- temporaries
def _temporary_name(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}")


def _new_temporary_file(path: Path) -> tuple[int, Path]:
    """A new, empty file beside `path`, open for writing, with the permissions any new file gets
    (0o666 less the umask; tempfile.mkstemp would make it private, 0o600)."""
    while True:
        tmp = _temporary_name(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def _new_temporary_directory(path: Path) -> Path:
    """A new, empty directory beside `path`, with the permissions any new directory gets."""
    while True:
        tmp = _temporary_name(path)
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def remove_leftovers(path: str | os.PathLike) -> None:
    """Removes the temporaries that killed writes of `path` left beside it (`.NAME.tmp-*`, and
    `.NAME.old-*` of replace_directory). Only for a path one process writes at a time: a
    concurrent writer's temporary would go too."""
    path = Path(path)
    for stale in [*path.parent.glob(f".{path.name}.tmp-*"), *path.parent.glob(f".{path.name}.old-*")]:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- files
def replace_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Replaces `path` (or creates it) by a file holding `data`: readers, and a crash, see the old
    contents or the new, never a mix."""
    replace_file(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def replace_json(path: str | os.PathLike, value: Any, *, indent: int | None = None, durable: bool = True) -> None:
    """replace_bytes with `value` as JSON (UTF-8)."""
    replace_bytes(path, json.dumps(value, indent=indent).encode("utf-8"), durable=durable)


def replace_file(path: str | os.PathLike, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """Replaces `path` (or creates it) by the file that `write(tmp)` writes at the path `tmp` it is
    given (an empty file beside `path`, which `write` may overwrite)."""
    path = Path(path)
    fd, tmp = _new_temporary_file(path)
    os.close(fd)
    try:
        write(tmp)
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


# ---------------------------------------------------------------------------- directories
def replace_directory(path: str | os.PathLike, write: Callable[[Path], None], *, replace: bool = True,
                      durable: bool = True) -> None:
    """Puts the directory that `write(tmp)` fills (a new, empty directory beside `path`) in the
    place of `path`: `path` is never seen half-written. An existing `path` is renamed aside
    (`.NAME.old-*`), the new directory renamed in, and the old one removed; between those two
    renames `path` is briefly missing (a directory cannot be swapped in one rename). With
    replace=False an existing `path` (but an empty directory) is left alone and FileExistsError
    raised instead, also when another process puts it there first. An error, Ctrl-C included,
    removes the temporary and leaves `path` as it was. The parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary_directory(path)
    try:
        write(tmp)
        if durable:
            _fsync_tree(tmp)
        if replace and (path.exists() or path.is_symlink()):
            old = _temporary_name(path, "old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # the old one back in its place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, path)  # onto nothing, or an empty directory
            except OSError as exc:
                if not replace and (path.exists() or path.is_symlink()):
                    raise FileExistsError(f"{path} exists and is not an empty directory") from exc
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if durable:
        fsync_dir(path.parent)
