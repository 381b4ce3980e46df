"""Fixtures of the board's attack tests: hostile archives and images built byte by byte.

The builders are plain functions; tests reach them through the ``kit`` fixture (``kit.zip_bytes``,
``kit.png_bomb``...). Everything is small and fast to build unless a function says otherwise; the
big versions (the member flood, the pixel bomb) are used by the ``slow`` tests and by
``tests/perf/bench_board_archives.py`` (which loads this file by path).
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def zip_bytes(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def zip_with_mode(name: str, mode: int, payload: bytes = b"target") -> bytes:
    """A zip whose one member carries Unix ``mode`` (e.g. a symbolic link, 0o120777)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
        info.external_attr = mode << 16
        zf.writestr(info, payload)
    return buf.getvalue()


def _central_entries(raw: bytes):
    """Offsets of every central directory header in a zip made by :mod:`zipfile`."""
    at = raw.find(b"PK\x01\x02")
    while at >= 0:
        yield at
        at = raw.find(b"PK\x01\x02", at + 4)


def patch_zip_sizes(raw: bytes, declared: int) -> bytes:
    """Declare ``declared`` uncompressed bytes for every member, in the central directory and
    the local headers (a bomb whose sizes are honest about being huge, or lie)."""
    data = bytearray(raw)
    for at in _central_entries(raw):
        struct.pack_into("<L", data, at + 24, declared)
    at = raw.find(b"PK\x03\x04")
    while at >= 0:
        struct.pack_into("<L", data, at + 22, declared)
        at = raw.find(b"PK\x03\x04", at + 4)
    return bytes(data)


def patch_zip_flag(raw: bytes, flag: int) -> bytes:
    """Set a general-purpose flag bit (0x1: encrypted) on every central directory entry."""
    data = bytearray(raw)
    for at in _central_entries(raw):
        old = struct.unpack_from("<H", data, at + 8)[0]
        struct.pack_into("<H", data, at + 8, old | flag)
    return bytes(data)


def patch_zip_entry_count(raw: bytes, count: int) -> bytes:
    """Make the end record declare ``count`` entries (the directory itself is unchanged)."""
    data = bytearray(raw)
    at = raw.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", data, at + 8, count, count)
    return bytes(data)


def zip_flood(n: int) -> bytes:
    """A stored zip of ``n`` empty members (tiny per entry, a long member list)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"f{i:07d}.png", b"")
    return buf.getvalue()


def tar_bytes(
    members: list[tarfile.TarInfo | tuple[str, bytes]], *, mode: str = "w", fmt=tarfile.PAX_FORMAT
) -> bytes:
    """A tar (``mode`` "w", "w:gz", "w:bz2", "w:xz") of regular files ``(name, data)`` and raw
    TarInfo members (links, devices: added without data)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                name, data = m
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def tar_declaring(name: str, declared: int, *, gz: bool = True) -> bytes:
    """A tar whose one member declares ``declared`` bytes of zeros: the header, then as much
    data as is written (none: a bomb rejected from its header needs no data to exist)."""
    info = tarfile.TarInfo(name)
    info.size = declared
    header = info.tobuf(format=tarfile.GNU_FORMAT)  # base-256 size field: any size
    raw = header + b"\0" * 4096  # a little of the promised data, then the stream just ends
    return gzip.compress(raw) if gz else raw


def tar_flood_gz(n: int, path: Path | None = None) -> bytes | Path:
    """A gzipped tar of ``n`` empty members, streamed (``path`` given: written there)."""
    target = open(path, "wb") if path is not None else io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.USTAR_FORMAT) as tf:
                for i in range(n):
                    tf.addfile(tarfile.TarInfo(f"f{i:07d}.png"))
        if path is not None:
            return path
        return target.getvalue()
    finally:
        if path is not None:
            target.close()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and an IHDR declaring ``width`` x ``height`` RGB, then an IEND: nothing to
    decode, so a rejection proves the limit was checked on the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def png_bomb(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A valid ``width`` x ``height`` black RGB PNG written row by row (about 1.2 MB for 20000^2;
    building it costs a few seconds of zlib, never the decoded 1.2 GB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)  # filter byte + RGB
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for _ in range(height):
            data = comp.compress(row)
            if data:
                fh.write(chunk(b"IDAT", data))
        fh.write(chunk(b"IDAT", comp.flush()))
        fh.write(chunk(b"IEND", b""))
    return path


def rgb_png(size: int = 16, value: int = 7) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- a tiny scored board


def tiny_dataset(base: Path, name: str = "tiny", n: int = 3, hr: int = 32) -> Path:
    """A generic ``hr/`` + ``lr/`` dataset of ``n`` random pairs (x4), ids ``img0..``."""
    rng = np.random.default_rng(5)
    root = base / name
    (root / "hr").mkdir(parents=True, exist_ok=True)
    (root / "lr").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 200, size=(hr, hr, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "hr" / f"img{i}.png")
        Image.fromarray(img[::4, ::4]).save(root / "lr" / f"img{i}.png")
    return root


def outputs_like_hr(root: Path, folder: Path, offset: int) -> Path:
    """Outputs that are the HR images plus ``offset`` (distinct bytes per offset)."""
    folder.mkdir(parents=True, exist_ok=True)
    for hr in sorted((root / "hr").glob("*.png")):
        arr = np.asarray(Image.open(hr)).astype(np.uint8) + np.uint8(offset)
        Image.fromarray(arr).save(folder / hr.name)
    return folder


KIT = (zip_bytes, zip_with_mode, patch_zip_sizes, patch_zip_flag, patch_zip_entry_count, zip_flood, tar_bytes, tar_special, tar_declaring, tar_flood_gz, png_header_only, png_bomb, rgb_png, tiny_dataset, outputs_like_hr)


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The hostile-input builders of this file, by name (``kit.tar_bytes(...)``)."""
    return SimpleNamespace(**{fn.__name__: fn for fn in KIT})
