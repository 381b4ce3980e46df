"""Content hashes of files, read in chunks (never the whole file in memory).

The benchmark keys scores and cached outputs by the sha256 of the input files, the weight
installer checks published sha256 sums, and capture layouts record the sha1 of the source they
were made from: all through :func:`file_digest`.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_digest", "file_sha256", "file_sha1"]

_CHUNK = 1 << 20  # 1 MiB: large enough for full disk throughput, small enough for any file


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of the bytes of the file at ``path`` with ``hashlib`` algorithm ``algorithm``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``algorithm`` is not one ``hashlib`` knows.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")


def file_sha1(path: str | os.PathLike[str]) -> str:
    """Hex sha1 of a file's bytes (the capture layouts' source fingerprint)."""
    return file_digest(path, "sha1")
