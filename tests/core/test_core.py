"""The shared core: errors, paths, atomic writes, the typed config loader, the pixel limit."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from core.atomic import atomic_path, atomic_write_bytes, atomic_write_json, write_if_changed
from core.config import from_dict, load_config, merge, parse_assignments, parse_options, to_dict
from core.errors import ConfigError, UnknownNameError, UserError, did_you_mean
from core.imagelimits import ImageTooLargeError, check_image_pixels, max_pixels
from core.paths import hf_hub_cache_dir, screensr_home, torch_hub_dir

# ------------------------------------------------------------------------------------ errors


def test_did_you_mean_offers_the_closest_or_the_choices() -> None:
    assert did_you_mean("bicubc", ["bicubic", "lanczos"]) == " (did you mean 'bicubic'?)"
    assert did_you_mean("zzz", ["b", "a"]) == " (choices: a, b)"
    assert did_you_mean("zzz", [str(i) for i in range(40)]) == ""


def test_unknown_name_error_is_a_user_facing_key_error_without_quotes() -> None:
    exc = UnknownNameError("method", "bicubc", ["bicubic"], hint="see screensr bench methods")
    assert isinstance(exc, KeyError) and isinstance(exc, UserError) and exc.is_user_error
    assert str(exc) == "unknown method 'bicubc' (did you mean 'bicubic'?); see screensr bench methods"


# ------------------------------------------------------------------------------------- paths


def test_empty_environment_variables_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCREENSR_HOME", "")
    monkeypatch.setenv("HOME", "/home/someone")
    assert screensr_home() == Path("/home/someone/.cache/screensr")
    monkeypatch.setenv("SCREENSR_HOME", "~/x")
    assert screensr_home() == Path("/home/someone/x")
    monkeypatch.setenv("TORCH_HOME", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "/c")
    assert torch_hub_dir() == Path("/c/torch/hub")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", "/h")
    assert hf_hub_cache_dir() == Path("/h/hub")


# ------------------------------------------------------------------------------------ atomic


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        target = atomic_write_bytes(tmp_path / "a.bin", b"x")
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"x")  # what an ordinary open() gives, the reference
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png"  # writers infer the format
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_json_and_write_if_changed(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "sub" / "x.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert write_if_changed(tmp_path / "y.txt", "same") is True
    mtime = (tmp_path / "y.txt").stat().st_mtime_ns
    assert write_if_changed(tmp_path / "y.txt", "same") is False
    assert (tmp_path / "y.txt").stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------------------ config


@dataclass
class Inner:
    steps: int = 25
    guidance: float = 0.5
    mode: Literal["release", "round"] = "release"
    size: tuple[int, int] = (64, 64)


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    seed: int | None = None
    path: Path | None = None
    flag: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")


def test_nested_configs_load_and_round_trip() -> None:
    cfg = from_dict(
        Outer, {"name": "a", "inner": {"steps": 8, "size": [32, 16]}, "seed": None, "path": "~/x"}
    )
    assert cfg.inner == Inner(steps=8, size=(32, 16)) and cfg.path == Path("~/x").expanduser()
    assert from_dict(Outer, to_dict(cfg)) == cfg
    assert merge(cfg, {"inner": {"guidance": -0.5}}).inner == Inner(steps=8, guidance=-0.5, size=(32, 16))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"name": "a", "inner": {"stpes": 8}},
            r"Outer\.inner: unknown key 'stpes' \(did you mean 'steps'\?\)",
        ),
        ({"name": "a", "flga": True}, r"unknown key 'flga' \(did you mean 'flag'\?\)"),
        ({}, r"missing required key 'name'"),
        ({"name": "a", "flag": 1}, r"Outer\.flag: expected true or false, got int 1"),
        ({"name": "a", "inner": {"steps": "8"}}, r"Outer\.inner\.steps: expected an integer, got str '8'"),
        (
            {"name": "a", "inner": {"mode": "rond"}},
            r"'rond' is not one of 'release', 'round' \(did you mean 'round'\?\)",
        ),
        ({"name": "a", "inner": {"size": [1, 2, 3]}}, r"expected 2 values, got 3"),
        ({"name": "a", "tags": "x"}, r"Outer\.tags: expected a list"),
        ({"name": ""}, r"Outer: name must not be empty"),
    ],
)
def test_bad_configs_name_the_key_and_the_fix(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data, where="Outer")


def test_ints_are_accepted_as_floats_and_whole_floats_as_ints() -> None:
    cfg = from_dict(Inner, {"guidance": 1, "steps": 8.0})
    assert cfg.guidance == 1.0 and isinstance(cfg.guidance, float) and cfg.steps == 8


def test_assignments_and_method_options() -> None:
    assert parse_assignments(["inner.steps=8", "name=x", "flag=true", "tags=[a, b]"]) == {
        "inner": {"steps": 8},
        "name": "x",
        "flag": True,
        "tags": ["a", "b"],
    }
    assert parse_options("steps=8,size=[32,16],mode=round") == {"steps": 8, "size": [32, 16], "mode": "round"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_assignments(["steps"])


def test_load_config_from_yaml_and_json_with_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("name: a\ninner:\n  steps: 8\n")
    cfg = load_config(
        Outer, tmp_path / "c.yaml", overrides={"seed": 3, "path": None}, assignments=["inner.guidance=2"]
    )
    assert (cfg.inner.steps, cfg.inner.guidance, cfg.seed, cfg.path) == (8, 2.0, 3, None)
    (tmp_path / "c.json").write_text('{"name": "b"}')
    assert load_config(Outer, tmp_path / "c.json").name == "b"
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Outer, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(Outer, tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="nosuch.yaml does not exist"):
        load_config(Outer, tmp_path / "nosuch.yaml")


# ------------------------------------------------------------------------------ pixel limit


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny file whose PNG header declares ``width x height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_pixel_limit_is_checked_on_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 100
    # beyond PIL's own guard (2 x 89.5 MP): still our error, with the declared size
    with pytest.raises(
        ImageTooLargeError, match=r"bomb\.png: declares 400\.0 MP, over the pixel limit of 100\.0 MP"
    ):
        check_image_pixels(bomb)
    # between our limit and PIL's guard: the exact dimensions
    wide = _png_header_only(tmp_path / "wide.png", 12000, 10000)
    with pytest.raises(
        ImageTooLargeError, match=r"wide\.png: 12000x10000 = 120\.0 MP exceeds the pixel limit of 100\.0 MP"
    ):
        check_image_pixels(wide)
    assert check_image_pixels(_png_header_only(tmp_path / "ok.png", 8000, 6000)) == (
        8000,
        6000,
    )  # 48 MP photo
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "1_000_000")
    assert max_pixels() == 1_000_000
    with pytest.raises(ImageTooLargeError, match="SCREENSR_MAX_PIXELS"):
        check_image_pixels(tmp_path / "ok.png")
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "lots")
    with pytest.raises(UserError, match="not an integer"):
        max_pixels()
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="junk.png: not a readable image"):
        check_image_pixels(tmp_path / "junk.png", limit=10**9)


# ---------------------------------------------------------------------------------- secrets


def test_secrets_are_salted_and_attempts_are_limited() -> None:
    from core.secrets import AttemptLimiter, check_secret, hash_secret

    a, b = hash_secret("s3cret"), hash_secret("s3cret")
    assert a != b and check_secret("s3cret", a) and check_secret("s3cret", b)
    assert (
        not check_secret("S3cret", a) and not check_secret("s3cret", "sha256$x") and not check_secret("x", "")
    )
    now = [0.0]
    slept: list[float] = []
    limiter = AttemptLimiter(
        max_failures=3, lockout_s=60, delay_s=0.5, clock=lambda: now[0], sleep=slept.append
    )
    for _ in range(3):
        assert not limiter.check("session-1", "guess", a)
    assert slept == [0.5, 0.5, 0.5]
    assert limiter.locked_for("session-1") == 60
    assert not limiter.check("session-1", "s3cret", a)  # locked out: even the right secret is refused
    assert limiter.check("session-2", "s3cret", a)  # other sessions are unaffected
    now[0] = 61.0
    assert limiter.check("session-1", "s3cret", a)


# ------------------------------------------------------------------------------ distributed


def _two_ranks(rank: int, port: int, out: str) -> None:
    import torch

    from core.distributed import all_gather_objects, all_mean, barrier, broadcast_object, init_distributed

    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = init_distributed("cpu")
    mean = all_mean(torch.tensor([float(rank)]))
    got = (
        info.world,
        info.rank,
        info.main,
        float(mean),
        broadcast_object(f"from {rank}"),
        all_gather_objects(rank),
    )
    barrier()
    Path(out, f"{rank}.json").write_text(repr(got))


def test_distributed_helpers_single_process_and_two_gloo_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torch.multiprocessing as tmp

    from core.distributed import (
        all_gather_objects,
        all_mean,
        broadcast_object,
        dist_context,
        free_port,
        init_distributed,
    )

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert (info.world, info.rank, info.main, info.device) == (1, 0, True, torch.device("cpu"))
    assert dist_context() == (0, 1)
    x = torch.tensor([3.0])
    assert all_mean(x) is x and broadcast_object("a") == "a" and all_gather_objects(1) == [1]
    tmp.start_processes(
        _two_ranks, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn", join=True
    )
    assert Path(tmp_path, "0.json").read_text() == "(2, 0, True, 0.5, 'from 0', [0, 1])"
    assert Path(tmp_path, "1.json").read_text() == "(2, 1, False, 0.5, 'from 0', [0, 1])"


def test_file_digest_equals_hashlib_across_chunk_boundaries(tmp_path):
    import hashlib

    from core.hashing import file_digest, file_sha1, file_sha256

    data = bytes(range(256)) * (5 * 4096 + 7)  # 5 MiB + 1792 bytes: several 1 MiB chunks and a tail
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()
    assert file_sha1(p) == hashlib.sha1(data).hexdigest()
    assert file_digest(p, "md5") == hashlib.md5(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_a_missing_config_file_is_both_a_config_error_and_file_not_found(tmp_path):
    from core.config import MissingConfigError, read_mapping
    from core.errors import UserError

    with pytest.raises(MissingConfigError, match="nosuch.json does not exist") as info:
        read_mapping(tmp_path / "nosuch.json")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, UserError)
