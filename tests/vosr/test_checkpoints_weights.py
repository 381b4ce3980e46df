"""The weight-file catalogue of the vosr package and checkpoint lookup by release tag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _vosr_helpers import golden_weights
from safetensors.torch import save_file

from vosr.weights import RELEASES, resolve_checkpoint, weight_files


def test_weight_files_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    files = weight_files()
    names = [f["name"] for f in files]
    assert len(names) == len(set(names))
    for f in files:
        assert set(f) == {"name", "path", "url", "used_by", "description"}
        assert isinstance(f["path"], Path) and f["used_by"] and f["description"]
        assert str(f["path"]).startswith(str(tmp_path))  # under SCREENSR_HOME or TORCH_HOME, nowhere else
    by_name = {f["name"]: f for f in files}
    for folder in RELEASES.values():
        assert by_name[f"{folder}/checkpoints/ema_model.safetensors"]["path"] == (
            tmp_path / "home" / "vosr" / folder / "checkpoints" / "ema_model.safetensors"
        )
        assert f"{folder}/args.json" in by_name
    assert (
        by_name["dinov2_vitb14_pretrain.pth"]["path"]
        == tmp_path / "torch" / "hub" / "checkpoints" / "dinov2_vitb14_pretrain.pth"
    )
    assert "dinov2_vitl14_pretrain.pth" in by_name and "sd21_lwdecoder.pth" in by_name
    assert {"sd21-vae/config.json", "Qwen-Image-vae-2d/diffusion_pytorch_model.safetensors"} <= set(by_name)
    assert not (tmp_path / "home").exists()  # listing creates nothing


def test_the_lead_catalogue_reads_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    from screensr.catalogue import vosr_weight_files

    entries = vosr_weight_files()
    assert len(entries) == len(weight_files()) and all(e.group == "vosr" for e in entries)


def test_release_tags_resolve_in_weights_dir_and_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    run = tmp_path / "usb" / "VOSR_0.5B_os"
    (run / "checkpoints").mkdir(parents=True)
    save_file(golden_weights("one_step"), str(run / "checkpoints" / "ema_model.safetensors"))
    (run / "args.json").write_text(
        json.dumps({"dim": 128, "depth": 2, "num_heads": 2, "resolution": 128, "enc_dim": 64})
    )
    assert resolve_checkpoint("vosr-0.5b-os", weights_dir=tmp_path / "usb") == run
    with pytest.raises(FileNotFoundError, match=r"VOSR_0\.5B_os/args\.json.*--weights-dir"):
        resolve_checkpoint("vosr-0.5b-os")
    home = tmp_path / "home" / "vosr" / "VOSR_0.5B_os"
    shutil.copytree(run, home)
    assert resolve_checkpoint("vosr-0.5b-os") == home
    from vosr.checkpoints import load_checkpoint

    model, info = load_checkpoint(resolve_checkpoint("vosr-0.5b-os"))
    assert model.one_step and info.layout == "released"


def test_file_sha256_is_cached_by_path_size_and_mtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import hashlib
    import os

    from vosr.weights import file_sha256

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    digest = file_sha256(f)
    assert digest == hashlib.sha256(b"a" * 1000).hexdigest()
    cache = json.loads((tmp_path / "home" / "vosr" / "sha256_cache.json").read_text())
    assert cache[str(f.absolute())]["sha256"] == digest
    # same path, size and mtime: the remembered digest is used, the file is not read again
    st = f.stat()
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(f) == digest
    assert file_sha256(f, cache=False) == hashlib.sha256(b"b" * 1000).hexdigest()
    # a new modification time (or size): hashed again
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest()
    f.write_bytes(b"b" * 999)
    assert file_sha256(f) == hashlib.sha256(b"b" * 999).hexdigest()
    # a corrupt cache file is rebuilt, with a warning, never silently trusted
    (tmp_path / "home" / "vosr" / "sha256_cache.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable hash cache"):
        assert file_sha256(f) == hashlib.sha256(b"b" * 999).hexdigest()
    assert json.loads((tmp_path / "home" / "vosr" / "sha256_cache.json").read_text())
