"""Atomic, umask-respecting file writes: a reader sees the old file or the new one, never half.

Every artefact the suite writes (datasets, canvases, outputs, checkpoints, exports, reports) goes
through here: the data is written to a temporary file in the destination's folder (same
filesystem, so ``os.replace`` is atomic), given the permissions an ordinary ``open()`` would have
given it (``0o666 & ~umask``; ``tempfile.mkstemp`` alone leaves 0600), and then renamed over the
destination. A crash leaves at most a hidden ``.NAME.*.tmp*`` file, removed on the next error path.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_text(d / "a.txt", "hello")
    >>> (d / "a.txt").read_text()
    'hello'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "current_umask",
    "atomic_path",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_copy",
    "write_if_changed",
]


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass  # no procfs (macOS, Windows): fall back to the set-and-restore idiom below
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, mode: int | None = None, durable: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path`` atomically.

    The temporary name keeps ``path``'s suffix, so writers that infer the format from the
    extension (PIL, OpenCV, pandas) work on it unchanged. On an exception the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: the destination; missing parent folders are created.
        mode: permission bits for the result; default ``0o666 & ~umask`` (as ``open()`` gives).
        durable: ``fsync`` the file (and its folder) so the write survives a power loss, not just
            a killed process. Costs a disk flush per file.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, (0o666 & ~current_umask()) if mode is None else mode)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
        if durable:
            _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, encoding: str | None = "utf-8", durable: bool = False
) -> Iterator[IO[Any]]:
    """``open()`` for writing whose result appears at ``path`` only once the block succeeds."""
    if "r" in mode or "a" in mode or "+" in mode:
        raise ValueError(f"atomic_open is for new content only (mode 'w' or 'wb'), got mode {mode!r}")
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb", durable=durable) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", durable: bool = False
) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", encoding=encoding, durable=durable) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    durable: bool = False,
) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically; returns ``path``."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text, durable=durable)


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy the file ``src`` to ``dst`` atomically (contents only; ``dst`` gets umask permissions)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def write_if_changed(path: str | os.PathLike[str], payload: bytes | str) -> bool:
    """Write ``payload`` atomically unless ``path`` already holds exactly it.

    Keeps modification times (and rsync/HTTP caches) stable for unchanged files of a static site.

    Returns:
        True when the file was (re)written.
    """
    dest = Path(path)
    raw = payload.encode() if isinstance(payload, str) else payload
    if dest.is_file() and dest.stat().st_size == len(raw) and dest.read_bytes() == raw:
        return False
    atomic_write_bytes(dest, raw)
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory file descriptors (Windows): nothing to flush
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
