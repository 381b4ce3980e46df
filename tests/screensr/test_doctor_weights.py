"""``screensr doctor`` and ``screensr weights`` report the truth about files on disk."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark import weights
from screensr import doctor


def _lpips_files():
    return weights.metric_weight_files("lpips")


@pytest.fixture
def lpips_installed(tmp_path, private_caches):
    """Random-weight stand-ins for LPIPS's two files, installed through `weights --from` into
    caches of this test's own (it deletes them again; the session's may hold the same files for
    other modules)."""
    src = tmp_path / "incoming"
    src.mkdir()
    for wf in _lpips_files():
        torch.save({"random": torch.randn(3)}, src / wf.name)
    installed = weights.install_from_dir(src, _lpips_files())
    assert {wf.name for wf, _ in installed} == {wf.name for wf in _lpips_files()}
    yield
    for wf in _lpips_files():
        wf.path.unlink(missing_ok=True)


def test_doctor_sees_a_file_appear_and_disappear(lpips_installed):
    report = doctor.collect()
    assert report.metrics["lpips"]["runnable"]
    assert report.aruco
    victim = _lpips_files()[0]
    victim.path.unlink()
    report = doctor.collect()
    assert not report.metrics["lpips"]["runnable"]
    assert report.metrics["lpips"]["missing"] == [str(victim.path)]
    row = next(w for w in report.weights if w["name"] == victim.name)
    assert row["present"] is False and row["path"] == str(victim.path)
    # and the human-readable report names the exact path
    assert str(victim.path) in doctor.format_report(report)


def test_doctor_cli_json_lists_missing_paths(run_screensr):
    out = run_screensr("doctor", "--json", check=True).stdout
    data = json.loads(out)
    musiq = data["metrics"]["musiq"]
    assert musiq["runnable"] is False
    assert musiq["missing"] == [str(weights.pyiqa_cache_dir() / "musiq_koniq_ckpt-e95806b9.pth")]
    assert data["metrics"]["psnr"]["runnable"] and data["metrics"]["niqe"]["runnable"]
    groups = {w["group"] for w in data["weights"]}
    assert groups == {"metric", "sr", "vosr"}


def test_doctor_strict_fails_when_files_missing(run_screensr):
    proc = run_screensr("doctor", "--strict")
    assert proc.returncode == 1


def test_realesrgan_ships_with_its_package():
    files = weights.sr_weight_files()
    assert [wf.name for wf in files] == ["realesrgan-x4plus.param", "realesrgan-x4plus.bin"]
    assert all(wf.present for wf in files)


def test_require_metric_weights_names_file_path_and_fix():
    with pytest.raises(weights.MissingWeightsError) as exc:
        weights.require_metric_weights("dists")
    msg = str(exc.value)
    for wf in weights.metric_weight_files("dists"):
        assert f"{wf.name} -> {wf.path}" in msg
    assert "screensr weights --from DIR" in msg


def test_niqe_ships_and_installs_offline():
    weights.require_metric_weights("niqe")
    assert (weights.pyiqa_cache_dir() / weights.NIQE_FILE).is_file()


def test_weights_from_dir_installs_hub_layout_that_timm_loads_offline(tmp_path, run_screensr):
    import timm
    from safetensors.torch import save_file

    wf = weights.metric_weight_files("topiq_nr")[1]
    assert wf.hf_repo == ("timm/resnet50.a1_in1k", "model.safetensors")
    assert not wf.present
    model = timm.create_model("resnet50", pretrained=False)
    src = tmp_path / "incoming"
    src.mkdir()
    save_file(model.state_dict(), str(src / wf.name))
    out = run_screensr("weights", "--from", src, "--group", "metric", check=True).stdout
    assert f"installed {wf.name}" in out
    assert wf.present
    loaded = timm.create_model("resnet50", pretrained=True)  # offline: resolves through the cache
    assert torch.equal(loaded.state_dict()["fc.weight"], model.state_dict()["fc.weight"])


def test_weights_from_dir_rejects_a_clip_file_with_wrong_checksum(tmp_path):
    wf = weights.metric_weight_files("clipiqa")[0]
    (tmp_path / wf.name).write_bytes(b"not the real CLIP")
    with pytest.raises(ValueError, match="sha256 does not match"):
        weights.install_from_dir(tmp_path, [wf])


def test_weights_listing_marks_missing(capsys):
    from screensr.cli import main

    assert main(["weights", "--missing", "--group", "metric", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["status"] == "missing" for r in rows)
    assert any(r["name"] == "MANIQA_PIPAL-ae6d356b.pth" for r in rows)


def test_weights_from_dir_matches_release_folders_by_relative_path(tmp_path):
    # four releases share the base name ema_model.safetensors: each must land in its own folder
    from screensr.catalogue import vosr_weight_files

    entries = {wf.name: wf for wf in vosr_weight_files()}
    src = tmp_path / "downloads"
    for tag in ("VOSR_0.5B_os", "VOSR_0.5B_ms"):
        (src / tag / "checkpoints").mkdir(parents=True)
        (src / tag / "checkpoints" / "ema_model.safetensors").write_bytes(tag.encode())
        (src / tag / "args.json").write_text("{}")
    installed = weights.install_from_dir(src, list(entries.values()))
    assert {wf.name for wf, _ in installed} == {
        "VOSR_0.5B_os/checkpoints/ema_model.safetensors",
        "VOSR_0.5B_os/args.json",
        "VOSR_0.5B_ms/checkpoints/ema_model.safetensors",
        "VOSR_0.5B_ms/args.json",
    }
    for tag in ("VOSR_0.5B_os", "VOSR_0.5B_ms"):
        assert entries[f"{tag}/checkpoints/ema_model.safetensors"].path.read_bytes() == tag.encode()
    assert not entries["VOSR_1.4B_os/checkpoints/ema_model.safetensors"].present


def test_installed_weight_files_get_umask_permissions_like_any_file(tmp_path, private_caches):
    # a mkstemp copy (the installers' old temporary) is 0600: another user of a shared cache
    # could not read it; core.atomic gives what open() gives, 0o666 & ~umask
    import os
    import stat

    from core.atomic import current_umask

    want = 0o666 & ~current_umask()
    src = tmp_path / "incoming"
    src.mkdir()
    files = _lpips_files()
    for wf in files:
        torch.save({"random": torch.randn(3)}, src / wf.name)
    try:
        weights.install_from_dir(src, files)
        for wf in files:
            assert stat.S_IMODE(os.stat(wf.path).st_mode) == want, wf.path
    finally:
        for wf in files:
            wf.path.unlink(missing_ok=True)
    niqe = weights.install_niqe_params(force=True)
    assert stat.S_IMODE(os.stat(niqe).st_mode) == want
    assert [p.name for p in niqe.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
