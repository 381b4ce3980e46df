"""Every archive attack on the Submit page's unpacking (``leaderboard.board.archives``), small and fast;
the full-size member flood and bomb are ``slow`` (and measured by tests/perf/bench_board_archives.py).

Each attack must be refused with a message naming the archive (and the member), and leave nothing
behind in the destination folder.
"""

from __future__ import annotations

import bz2
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from leaderboard.board.archives import ArchiveLimits, UnsafeArchiveError, unpack_archive

SMALL = ArchiveLimits(max_members=50, max_bytes=1 << 20, max_header_bytes=16 << 10)


def _unpack(tmp_path: Path, name: str, payload: bytes, limits: ArchiveLimits | None = SMALL) -> Path:
    src = tmp_path / "upload" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    return unpack_archive(src, tmp_path / "into", name=name, limits=limits)


def _refused(
    tmp_path: Path, name: str, payload: bytes, pattern: str, limits: ArchiveLimits | None = SMALL
) -> str:
    with pytest.raises(UnsafeArchiveError, match=pattern) as info:
        _unpack(tmp_path, name, payload, limits)
    assert str(info.value).startswith(f"{name}: "), "the message names the archive"
    into = tmp_path / "into"
    assert not into.exists() or not any(into.iterdir()), f"left behind: {list(into.rglob('*'))}"
    return str(info.value)


# --------------------------------------------------------------------------- what works


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_valid_tar_archives_unpack_byte_for_byte(kit, tmp_path, mode):
    files = {f"out/img{i}.png": kit.rgb_png(value=i) for i in range(3)}
    folder = _unpack(tmp_path, "s.tar" + {"w": "", "w:gz": ".gz", "w:bz2": ".bz2", "w:xz": ".xz"}[mode],
                     kit.tar_bytes(list(files.items()), mode=mode))  # fmt: skip
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.png")} == files


def test_valid_zip_unpacks_byte_for_byte(kit, tmp_path):
    files = {f"out/img{i}.png": kit.rgb_png(value=i) for i in range(3)} | {"out/": b""}
    folder = _unpack(tmp_path, "s.zip", kit.zip_bytes(files))
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.png")} == {
        k: v for k, v in files.items() if v
    }


# --------------------------------------------------------------------------- names and types


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../evil.png", "points outside the archive"),
        ("out/../../evil.png", "points outside the archive"),
        ("/etc/evil.png", "points outside the archive"),
        ("C:evil.png", "points outside the archive"),
        ("out\\..\\evil.png", "backslash"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_names_that_escape_are_refused(kit, tmp_path, member, why, kind):
    payload = kit.zip_bytes({member: b"x"}) if kind == "zip" else kit.tar_bytes([(member, b"x")])
    _refused(tmp_path, f"evil.{kind}", payload, why)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "upload" / "evil.png").exists()


@pytest.mark.parametrize(
    ("kind", "linkname"),
    [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "img0.png"), (tarfile.CHRTYPE, ""),
     (tarfile.BLKTYPE, ""), (tarfile.FIFOTYPE, "")],
)  # fmt: skip
def test_tar_links_devices_and_fifos_are_refused(kit, tmp_path, kind, linkname):
    payload = kit.tar_bytes([("img0.png", kit.rgb_png()), kit.tar_special("img1.png", kind, linkname)])
    _refused(tmp_path, "special.tar", payload, "member 'img1.png' is a link, device or other special file")


@pytest.mark.parametrize("mode", [0o120777, 0o020644, 0o010644])  # symlink, character device, FIFO
def test_zip_symlinks_and_special_files_are_refused(kit, tmp_path, mode):
    _refused(
        tmp_path, "special.zip", kit.zip_with_mode("img0.png", mode), "is a link, device or other special file"
    )


def test_a_name_twice_is_refused(kit, tmp_path):
    payload = kit.tar_bytes([("img0.png", kit.rgb_png(value=1)), ("./img0.png", kit.rgb_png(value=2))])
    _refused(tmp_path, "twice.tar", payload, "'./img0.png' appears twice")


def test_encrypted_zip_members_are_refused(kit, tmp_path):
    _refused(tmp_path, "locked.zip", kit.patch_zip_flag(kit.zip_bytes({"img0.png": kit.rgb_png()}), 0x1), "is encrypted")


def test_unknown_types_are_refused(tmp_path):
    _refused(tmp_path, "outputs.rar", b"Rar!\x1a\x07\x00", "not a .zip or .tar")


# --------------------------------------------------------------------------- corrupt and truncated


def test_truncated_tar_gz_is_a_corrupt_archive_not_an_eoferror(kit, tmp_path):
    raw = kit.tar_bytes([(f"img{i}.png", kit.rgb_png(64, i)) for i in range(4)], mode="w:gz")
    message = _refused(tmp_path, "cut.tar.gz", raw[: len(raw) // 2], "corrupt or truncated archive")
    assert "EOFError" in message or "truncated" in message


def test_truncated_plain_tar_is_a_corrupt_archive(kit, tmp_path):
    raw = kit.tar_bytes([("img0.png", b"\x01" * 5000)])
    _refused(tmp_path, "cut.tar", raw[: 512 + 2000], "corrupt or truncated archive")


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("bad.tar.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 200),
        ("bad.tar.bz2", b"BZh9" + b"\x00" * 200),
        ("bad.tar.xz", b"\xfd7zXZ\x00" + b"\x00" * 200),
        ("bad.tar", b"\x00" * 100),
        ("bad.zip", b"PK\x03\x04garbage"),
        ("cut.zip", None),
    ],
)
def test_corrupt_archives_are_refused_as_such(kit, tmp_path, name, payload):
    if payload is None:
        whole = kit.zip_bytes({"img0.png": kit.rgb_png(64)})
        payload = whole[: len(whole) - 30]  # the end record is gone
    _refused(tmp_path, name, payload, "corrupt or truncated archive|not a readable zip archive")


def test_a_zip_member_whose_data_is_damaged_is_refused(kit, tmp_path):
    raw = bytearray(kit.zip_bytes({"img0.png": bz2.compress(b"x") * 200}))
    at = raw.find(b"img0.png") + len("img0.png") + 10  # inside the deflated data of the member
    raw[at : at + 8] = b"\xff" * 8
    _refused(tmp_path, "damaged.zip", bytes(raw), "corrupt or truncated archive")


# --------------------------------------------------------------------------- limits (small stand-ins)


def test_tar_member_flood_stops_at_the_first_member_over_the_limit(kit, tmp_path):
    message = _refused(tmp_path, "flood.tar.gz", kit.tar_flood_gz(5_000), "more than 50 members")
    assert "5000" not in message  # rejected while streaming, not after counting them all


def test_zip_member_flood_is_rejected_from_the_end_record(kit, tmp_path):
    _refused(tmp_path, "flood.zip", kit.zip_flood(500), "declares 500 members; at most 50")


def test_zip_whose_end_record_lies_about_its_entries_is_rejected_while_scanning(kit, tmp_path):
    raw = kit.patch_zip_entry_count(kit.zip_flood(500), 3)
    _refused(tmp_path, "liar.zip", raw, "more than 50 members")


def test_zip_bomb_is_rejected_from_declared_sizes_before_extracting(kit, tmp_path):
    raw = kit.patch_zip_sizes(kit.zip_bytes({f"img{i}.png": b"\0" * 1000 for i in range(5)}), 3 << 30)
    _refused(
        tmp_path,
        "bomb.zip",
        raw,
        "unpacks to more than 1048576 bytes \\(declared sizes, at member 'img0.png'\\)",
    )


def test_zip_that_understates_its_sizes_never_produces_more(kit, tmp_path):
    raw = kit.patch_zip_sizes(kit.zip_bytes({"img0.png": b"\0" * 400_000}), 1000)
    _refused(tmp_path, "liar.zip", raw, "corrupt or truncated archive")


def test_tar_bomb_is_rejected_from_its_header_before_any_data_is_read(kit, tmp_path):
    _refused(
        tmp_path, "bomb.tar.gz", kit.tar_declaring("img0.png", 1 << 40), "declared sizes, at member 'img0.png'"
    )


def test_total_size_counts_every_member(kit, tmp_path):
    members = [(f"img{i}.png", b"\x01" * 300_000) for i in range(4)]  # 1.2 MB > 1 MiB in all
    _refused(tmp_path, "big.tar", kit.tar_bytes(members), "at member 'img3.png'")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_oversized_tar_metadata_is_refused_without_reading_it_whole(kit, tmp_path, fmt):
    long_name = "d/" * 40_000 + "img.png"  # 80 KB of name: a GNU long-name record / pax header
    raw = kit.tar_bytes([(long_name, b"x")], fmt=fmt)
    _refused(tmp_path, "meta.tar", raw, "header records exceed 16384 bytes")


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_members must be positive"):
        ArchiveLimits(max_members=0)


# --------------------------------------------------------------------------- full size (slow)


@pytest.mark.slow
def test_a_full_size_tar_member_flood_is_rejected_fast_and_flat(kit, tmp_path):
    """The issue's case: a tar.gz of a few hundred thousand empty members; the old code built the
    whole member list first (477 MiB, 28 s for a 6.7 MiB one). Default limits: rejected at
    member 20 001, after parsing headers only."""
    path = kit.tar_flood_gz(300_000, tmp_path / "flood.tar.gz")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(UnsafeArchiveError, match="more than 20000 members"):
        unpack_archive(path, tmp_path / "into")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert elapsed < 20, f"{elapsed:.1f} s"


@pytest.mark.slow
def test_a_full_size_zip_flood_is_rejected_before_zipfile_lists_it(kit, tmp_path):
    path = tmp_path / "flood.zip"
    path.write_bytes(kit.zip_flood(300_000))  # zip64: its own end record declares the true count
    tracemalloc.start()
    with pytest.raises(UnsafeArchiveError, match="declares 300000 members; at most 20000"):
        unpack_archive(path, tmp_path / "into")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.slow
def test_a_zip_bomb_over_the_default_limit_extracts_nothing(kit, tmp_path):
    path = tmp_path / "bomb.zip"
    path.write_bytes(kit.patch_zip_sizes(kit.zip_bytes({f"img{i}.png": b"\0" * 1000 for i in range(3)}), 2 << 30))
    with pytest.raises(UnsafeArchiveError, match="declared sizes"):
        unpack_archive(path, tmp_path / "into")
    assert not any((tmp_path / "into").iterdir())


def test_zip_members_are_read_from_zipfile_only_after_the_scan(kit, tmp_path, monkeypatch):
    """The central directory is scanned by our bounded walk first: ZipFile is never even
    constructed for an archive over the limits."""
    payload = kit.patch_zip_entry_count(kit.zip_flood(200), 3)
    built = []
    real = zipfile.ZipFile

    def spy(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", spy)
    _refused(tmp_path, "flood.zip", payload, "more than 50 members")
    assert built == []
