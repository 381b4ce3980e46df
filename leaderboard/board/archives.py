"""Unpacking untrusted archives (``.zip``, ``.tar``, ``.tar.gz`` / ``.tgz``, ``.tar.bz2``, ``.tar.xz``)
with bounded work.

An upload is streamed, never read whole into memory, and every limit is checked before the work
it bounds is done:

- zip: the central directory is scanned entry by entry (fixed 46-byte headers, read from the
  file) before :class:`zipfile.ZipFile` builds its member list, so a flood of entries or a bomb
  whose declared sizes add up past the limit costs one pass over the directory and nothing
  else; the bytes actually decompressed are counted too while extracting.
- tar: read in stream mode, one member at a time, twice: a first pass admits every member from
  its header alone (count, total declared size, name, type) and writes nothing, so a flood is
  refused at the first member over the limit after parsing headers only; the second pass
  extracts, counting the bytes actually written. The metadata of one member (pax or GNU
  long-name records, which :mod:`tarfile` reads whole into memory) is capped by metering the
  decompressed stream.
- every member: no absolute name, ``..`` component, backslash or NUL; regular files and folders
  only (symbolic and hard links, devices, FIFOs and sparse files are refused); no name twice;
  encrypted zip members refused. Files are written with the process umask (archive modes and
  owners are ignored).
- a truncated or corrupt archive is a :class:`UnsafeArchiveError` naming the archive, never an
  ``EOFError``/``zlib.error`` from the decompressor.

On any error nothing is left behind: members are extracted into a fresh temporary folder inside
the destination, removed on failure.

Example:
    >>> folder = unpack_archive(Path("outputs.tar.gz"), Path("incoming"))  # doctest: +SKIP
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import struct
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from core.errors import UserError

__all__ = ["ArchiveLimits", "UnsafeArchiveError", "unpack_archive", "ARCHIVE_SUFFIXES", "is_archive_name"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

CHUNK = 1 << 20  # bytes copied per read: bounds the memory of every copy loop


class UnsafeArchiveError(UserError, ValueError):
    """An archive refused as unsafe, over a limit, or unreadable (the message names the member)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on the work an archive may cause.

    Attributes:
        max_members: files and folders in one archive (a submission is one image per pair).
        max_bytes: total uncompressed size, declared and actual (bytes); 4 GiB holds the 4x
            outputs of a few hundred 12 MP photos as PNG.
        max_header_bytes: metadata of one tar member (pax / long-name records), read into memory
            by :mod:`tarfile`; real names need a few hundred bytes.
    """

    max_members: int = 20_000
    max_bytes: int = 4 << 30
    max_header_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_members", "max_bytes", "max_header_bytes"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"ArchiveLimits.{name} must be positive, got {getattr(self, name)}")


def is_archive_name(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_archive(
    path: Path, into: Path, *, name: str | None = None, limits: ArchiveLimits | None = None
) -> Path:
    """Extract the archive at ``path`` into a new folder inside ``into``, within ``limits``.

    Args:
        path: the archive file (read as a stream; never loaded whole).
        into: an existing or new folder; the members go to a fresh temporary folder inside it.
        name: the archive's name in messages and for its type (default ``path.name``).
        limits: the bounds (default :class:`ArchiveLimits`).

    Returns:
        The folder holding the extracted members.

    Raises:
        UnsafeArchiveError: unsafe member, limit exceeded, unknown type, corrupt or truncated
            archive (nothing is left in ``into`` then).
    """
    label = name or path.name
    limits = limits or ArchiveLimits()
    into.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=".unpack-", dir=into))
    try:
        lower = label.lower()
        if lower.endswith(".zip"):
            _unzip(path, out, label, limits)
        elif is_archive_name(lower):
            _untar(path, out, label, limits)
        else:
            raise UnsafeArchiveError(
                f"{label}: not a .zip or .tar(.gz/.bz2/.xz) archive; upload an archive of the SR images"
            )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


# --------------------------------------------------------------------------- member names


class _Members:
    """Checks each member as it comes: its name, and the running count and size."""

    def __init__(self, root: Path, archive: str, limits: ArchiveLimits) -> None:
        self.root, self.archive, self.limits = root, archive, limits
        self.count = 0
        self.declared = 0
        self.written = 0
        self.seen: set[str] = set()

    def refuse(self, member: str, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: member {member!r} {why}; refusing the archive")

    def admit(self, member: str, declared_size: int) -> Path:
        """Count one member and return where it goes (raises at the first breach)."""
        self.count += 1
        if self.count > self.limits.max_members:
            raise UnsafeArchiveError(
                f"{self.archive}: more than {self.limits.max_members} members; at most "
                f"{self.limits.max_members} are accepted (one image per pair)"
            )
        self.declared += max(int(declared_size), 0)
        if self.declared > self.limits.max_bytes:
            raise UnsafeArchiveError(
                f"{self.archive}: unpacks to more than {self.limits.max_bytes} bytes (declared sizes, at member "
                f"{member!r}); the limit guards against archive bombs: submit fewer or smaller images"
            )
        return self._destination(member)

    def _destination(self, member: str) -> Path:
        if not member or "\x00" in member or "\\" in member:
            raise self.refuse(member, "has an empty name, a NUL or a backslash")
        pure = PurePosixPath(member)
        if pure.is_absolute() or ".." in pure.parts or (len(member) > 1 and member[1] == ":"):
            raise self.refuse(member, "points outside the archive")
        parts = [p for p in pure.parts if p not in ("", ".")]
        if not parts:
            raise self.refuse(member, "has no file name")
        key = "/".join(parts)
        if key in self.seen:
            raise self.refuse(member, "appears twice")
        self.seen.add(key)
        # no absolute name, no "..", and nothing extracted is a link: the path stays inside root
        return self.root.joinpath(*parts)

    def write(self, member: str, source: IO[bytes], dest: Path, declared_size: int | None) -> None:
        """Copy one member's data in chunks, counting the bytes actually produced."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        produced = 0
        with open(dest, "xb") as fh:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                produced += len(chunk)
                self.written += len(chunk)
                if self.written > self.limits.max_bytes:
                    raise UnsafeArchiveError(
                        f"{self.archive}: unpacks to more than {self.limits.max_bytes} bytes (at member "
                        f"{member!r}); the limit guards against archive bombs"
                    )
                if declared_size is not None and produced > declared_size:
                    raise self.refuse(member, f"holds more data than the {declared_size} bytes it declares")
                fh.write(chunk)
        if declared_size is not None and produced < declared_size:
            raise UnsafeArchiveError(
                f"{self.archive}: member {member!r} is truncated ({produced} of {declared_size} bytes); the archive "
                "is corrupt or incomplete: re-create it and upload it again"
            )


def _corrupt(archive: str, exc: BaseException) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc}); re-create it and upload it again"
    )


# --------------------------------------------------------------------------- zip

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator (20 bytes)
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (56 bytes)
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (46 bytes)


def _central_directory(fh: BinaryIO, archive: str) -> tuple[int, int, int]:
    """``(start, size, declared entries)`` of the central directory (APPNOTE 4.3.14-4.3.16).

    The start is where :mod:`zipfile` will read it: just before the end record (or the zip64
    end record), which also covers archives with data prepended.
    """
    end = fh.seek(0, os.SEEK_END)
    tail_len = min(end, _EOCD.size + 0xFFFF)
    fh.seek(end - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise UnsafeArchiveError(
            f"{archive}: not a readable zip archive (no end of central directory); re-create it"
        )
    _, _, _, _, entries, size, _offset, _ = _EOCD.unpack_from(tail, pos)
    eocd_at = end - tail_len + pos
    directory_end = eocd_at
    # a zip64 locator right before the end record takes precedence whatever the end record
    # says (as in zipfile): the zip64 record then sits between the directory and the locator
    locator_at = eocd_at - _EOCD64_LOCATOR.size
    if locator_at >= 0:
        fh.seek(locator_at)
        locator = fh.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            record_at = locator_at - _EOCD64.size
            fh.seek(max(record_at, 0))
            record = fh.read(_EOCD64.size)
            if record_at < 0 or record[:4] != b"PK\x06\x06":
                raise UnsafeArchiveError(
                    f"{archive}: not a readable zip archive (bad zip64 record); re-create it"
                )
            fields = _EOCD64.unpack(record)
            entries, size, directory_end = fields[7], fields[8], record_at
    start = directory_end - size
    if start < 0:
        raise UnsafeArchiveError(
            f"{archive}: not a readable zip archive (central directory out of range); re-create it"
        )
    return start, size, entries


def _zip64_size(extra: bytes, uncompressed: int, compressed: int) -> int:
    """The uncompressed size from a zip64 extra field (tag 0x0001) when the header says 0xFFFFFFFF."""
    i = 0
    while i + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, i)
        if tag == 0x0001 and uncompressed == 0xFFFFFFFF and length >= 8:
            return struct.unpack_from("<Q", extra, i + 4)[0]
        i += 4 + length
    return uncompressed


def _scan_zip(fh: BinaryIO, archive: str, members: _Members) -> None:
    """Walk the central directory header by header, admitting each entry (count, size, name,
    type) before :class:`zipfile.ZipFile` is allowed to build its own list."""
    start, size, entries = _central_directory(fh, archive)
    if entries > members.limits.max_members:
        raise UnsafeArchiveError(
            f"{archive}: declares {entries} members; at most {members.limits.max_members} are accepted"
        )
    fh.seek(start)
    done = 0
    while done < size:
        head = fh.read(_CENTRAL.size)
        if len(head) < _CENTRAL.size or head[:4] != b"PK\x01\x02":
            raise UnsafeArchiveError(
                f"{archive}: not a readable zip archive (bad central directory); re-create it"
            )
        fields = _CENTRAL.unpack(head)
        # field positions as in APPNOTE 4.3.12 (and zipfile's own _CD_* indices)
        flags, compressed, uncompressed = fields[5], fields[10], fields[11]
        name_len, extra_len, comment_len, external = fields[12], fields[13], fields[14], fields[17]
        raw_name = fh.read(name_len)
        extra = fh.read(extra_len)
        fh.seek(comment_len, os.SEEK_CUR)
        done += _CENTRAL.size + name_len + extra_len + comment_len
        member = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        declared = _zip64_size(extra, uncompressed, compressed)
        members.admit(member, declared)
        kind = (external >> 16) & 0o170000
        if kind not in (0, 0o100000, 0o040000):
            raise members.refuse(member, "is a link, device or other special file")
        if flags & 0x1:
            raise members.refuse(member, "is encrypted (password-protected archives are not accepted)")
    # the members are admitted again, as they are extracted, against fresh counters
    members.count, members.declared, members.seen = 0, 0, set()


def _unzip(path: Path, root: Path, archive: str, limits: ArchiveLimits) -> None:
    members = _Members(root, archive, limits)
    try:
        with open(path, "rb") as fh:
            _scan_zip(fh, archive, members)
            with zipfile.ZipFile(fh) as zf:
                for info in zf.infolist():
                    dest = members.admit(info.filename, info.file_size)
                    if info.is_dir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    with zf.open(info) as source:
                        members.write(info.filename, source, dest, info.file_size)
    except UnsafeArchiveError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        lzma.LZMAError,
    ) as exc:
        raise _corrupt(archive, exc) from exc


# --------------------------------------------------------------------------- tar


class _Meter:
    """A read-only stream over the decompressed tar data that bounds what tarfile may read.

    Stream-mode :mod:`tarfile` reads a member's metadata records (pax headers, GNU long names)
    whole into memory while parsing a header; :attr:`header_budget` caps those bytes, and the
    total is capped at the archive limit plus the headers' own blocks.
    """

    def __init__(self, raw: io.BufferedIOBase | BinaryIO, archive: str, limits: ArchiveLimits) -> None:
        self.raw, self.archive, self.limits = raw, archive, limits
        self.total = 0
        self.header_budget: int | None = None
        # every member costs at least one 512-byte header block plus padding to 512 bytes
        self.total_cap = limits.max_bytes + (limits.max_members + 2) * 1024 + (1 << 20)

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else min(size, CHUNK)
        data = self.raw.read(want)
        self.total += len(data)
        if self.header_budget is not None:
            self.header_budget -= len(data)
            if self.header_budget < 0:
                raise UnsafeArchiveError(
                    f"{self.archive}: a member's header records exceed {self.limits.max_header_bytes} bytes "
                    "(oversized pax or long-name data); refusing the archive"
                )
        if self.total > self.total_cap:
            raise UnsafeArchiveError(f"{self.archive}: unpacks to more than {self.limits.max_bytes} bytes")
        return data


def _decompressor(fh: BinaryIO, archive: str) -> io.BufferedIOBase | BinaryIO:
    """A decompressing reader chosen by the stream's magic bytes (plain tar otherwise)."""
    magic = fh.read(6)
    fh.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(fh, mode="rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(fh, mode="rb")
    return fh


def _tar_members(fh: BinaryIO, archive: str, limits: ArchiveLimits):
    """Yield ``(TarInfo, TarFile)`` for each member of a tar stream, metering its metadata."""
    meter = _Meter(_decompressor(fh, archive), archive, limits)
    # opening parses the first header already: it is metered like every later one
    meter.header_budget = limits.max_header_bytes + 2 * tarfile.RECORDSIZE
    # "r|": a forward-only stream; members are parsed one at a time as we ask for them
    # tarfile's stub wants a file object type; it only ever calls read() on a stream ("r|")
    with tarfile.open(fileobj=meter, mode="r|") as tf:  # type: ignore[call-overload]
        while True:
            meter.header_budget = limits.max_header_bytes + 2 * tarfile.RECORDSIZE
            info = tf.next()
            meter.header_budget = None
            if info is None:
                return
            yield info, tf
            tf.members.clear()  # stream mode keeps every TarInfo otherwise: memory stays flat


def _drain(source: BinaryIO | None) -> None:
    """Read a member's data to its end (so the next header is read as metadata, not as data)."""
    while source is not None and source.read(CHUNK):
        pass


def _untar(path: Path, root: Path, archive: str, limits: ArchiveLimits) -> None:
    """Two streamed passes: the first admits every member from its header alone (count, declared
    size, name, type), reading no member into memory and writing nothing; only an archive that
    passes is read again and extracted (counting the bytes actually written)."""
    members = _Members(root, archive, limits)
    try:
        with open(path, "rb") as fh:
            for info, tf in _tar_members(fh, archive, limits):
                members.admit(info.name, info.size)
                if not (info.isdir() or (info.isreg() and not info.issparse())):
                    raise members.refuse(info.name, "is a link, device or other special file")
                if info.isreg():
                    _drain(tf.extractfile(info))
        members.count, members.declared, members.seen = 0, 0, set()
        with open(path, "rb") as fh:
            for info, tf in _tar_members(fh, archive, limits):
                dest = members.admit(info.name, info.size)
                if info.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                source = tf.extractfile(info)
                if source is None:
                    raise members.refuse(info.name, "has no data")
                members.write(info.name, source, dest, info.size)
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise _corrupt(archive, exc) from exc
    except OSError as exc:
        # bz2 reports a damaged stream as a bare OSError; anything from writing the members (a
        # full disk) carries an errno and is not the archive's fault
        if exc.errno is None:
            raise _corrupt(archive, exc) from exc
        raise
