"""The weight-file catalogue of the vosr package and checkpoint lookup by release tag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from vosr.releases import RELEASES
from vosr.weights import resolve_checkpoint, weight_files


def test_weight_files_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.weights import WeightFile
    from vosr.semantic import SEMANTIC_ENCODERS

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    files = weight_files()
    names = [f.name for f in files]
    assert len(names) == len(set(names))
    for f in files:
        assert isinstance(f, WeightFile) and f.group == "vosr"
        assert isinstance(f.path, Path) and f.used_by and f.description
        # a download source, or a note saying why there is none (random-init test sizes)
        assert (f.url is None) != (f.ships_with is None), f.name
        assert str(f.path).startswith(str(tmp_path))  # under SCREENSR_HOME, TORCH_HOME or HF_HOME, nowhere else
    by_name = {f.name: f for f in files}
    for rel in RELEASES.values():
        assert by_name[f"{rel.folder}/checkpoints/ema_model.safetensors"].path == (
            tmp_path / "home" / "vosr" / rel.folder / "checkpoints" / "ema_model.safetensors"
        )
        assert by_name[f"{rel.folder}/args.json"].used_by == (rel.tag,)
    b14 = by_name["dinov2_vitb14_pretrain.pth"]
    assert b14.path == tmp_path / "torch" / "hub" / "checkpoints" / "dinov2_vitb14_pretrain.pth"
    # which release uses which file comes from the model sizes, not from the names
    assert b14.used_by == ("vosr-0.5b-ms", "vosr-0.5b-os")
    assert by_name["dinov2_vitl14_pretrain.pth"].used_by == ("vosr-1.4b-ms", "vosr-1.4b-os")
    assert by_name["Qwen-Image-vae-2d/config.json"].used_by == ("vosr-1.4b-ms", "vosr-1.4b-os")
    assert "sd21_lwdecoder.pth" in by_name
    assert {"sd21-vae/config.json", "Qwen-Image-vae-2d/diffusion_pytorch_model.safetensors"} <= set(by_name)
    # every registered semantic encoder is listed: the Table 1 ablation encoders in timm's Hugging Face
    # cache (installable from a <name>.safetensors too), the tiny ones as random-init test sizes
    clip = by_name["vit_base_patch16_clip_224.openai.safetensors"]
    assert clip.hf_repo == ("timm/vit_base_patch16_clip_224.openai", "model.safetensors")
    assert "clip_vitb16.safetensors" in clip.accepted_names() and "semantic_encoder=clip" in clip.used_by[0]
    assert len([f for f in files if f.name.endswith(("_pretrain.pth", ".safetensors")) and (
        f.name.startswith(("dinov2", "vit_", "clip", "siglip2", "dinov3")))]) == len(SEMANTIC_ENCODERS)  # fmt: skip
    tiny = by_name["dinov2_tiny_pretrain.pth"]
    assert tiny.url is None and "screensr vosr train --recipe tiny" in tiny.ships_with and tiny.used_by == ("vosr-tiny",)
    assert by_name["tiny-kl-vae/config.json"].ships_with == tiny.ships_with
    assert not (tmp_path / "home").exists()  # listing creates nothing


def test_the_lead_catalogue_reads_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    from screensr.catalogue import vosr_weight_files

    assert vosr_weight_files() == weight_files()


def test_release_tags_resolve_in_weights_dir_and_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
, golden_weights) -> None:
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
