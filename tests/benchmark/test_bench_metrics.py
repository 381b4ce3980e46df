"""Metric specs against pyiqa and against published calibration values."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.images import read_image
from benchmark.metrics import METRICS, PROTOCOLS, MetricModel, check_weights, get_metric, resolve_metrics
from core.errors import ConfigError, UnknownNameError


def _calibration(calibration_dir: Path, method: str) -> dict[str, float]:
    """pyiqa's own values for the TID2013 calibration images (rows ``name(ours)``)."""
    with open(calibration_dir / "calibration_summary.csv") as f:
        for row in csv.DictReader(f):
            if row["Method"] == f"{method}(ours)":
                return {k: float(v) for k, v in row.items() if k != "Method"}
    raise KeyError(method)


def test_registry_directions_and_modes_match_pyiqa():
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for spec in METRICS.values():
        cfg = DEFAULT_CONFIGS[spec.pyiqa_name]
        assert cfg["metric_mode"] == spec.kind, spec.name
        assert (not cfg.get("lower_better", False)) == spec.higher_is_better, spec.name
    assert get_metric("maniqa").pyiqa_name == "maniqa-pipal"  # the papers' checkpoint, not KonIQ
    assert get_metric("psnr").options == {"test_y_channel": True, "color_space": "ycbcr", "crop_border": 0}
    assert set(PROTOCOLS["gt-quality"]) == {"niqe", "musiq", "maniqa", "afine_nr", "topiq_nr"}


def test_unknown_metric_is_an_unknown_name_error():
    with pytest.raises(UnknownNameError) as exc:
        get_metric("psnrr")
    assert str(exc.value).startswith("unknown metric 'psnrr' (did you mean 'psnr'?); registered: psnr, ssim,")
    # the registered names are suggested before pyiqa's long tail ("unique" is closer to "nique")
    with pytest.raises(UnknownNameError, match=r"^unknown metric 'nique' \(did you mean 'niqe'\?\)"):
        resolve_metrics("psnr,nique")
    with pytest.raises(UnknownNameError, match="fid scores a set of images, not one image"):
        get_metric("fid")


def test_metric_options_are_checked_against_pyiqa():
    with pytest.raises(ConfigError) as exc:
        resolve_metrics("psnr@crop_bordr=4")
    assert str(exc.value).startswith("unknown option 'crop_bordr' for metric psnr (did you mean 'crop_border'?); ")
    # PSNR's **kwargs reach its function: data_range is a real option; LPIPS ignores unknown
    # keywords, so a misspelt one would silently change nothing: rejected as well
    assert resolve_metrics("psnr@data_range=255")[0].options["data_range"] == 255
    with pytest.raises(ConfigError, match=r"unknown option 'nett' for metric lpips \(did you mean 'net'\?\)"):
        resolve_metrics("lpips@nett=vgg")
    assert resolve_metrics("ssim@downsample=true")[0].options["downsample"] is True


def test_resolve_protocols_overrides_and_errors():
    names = [s.name for s in resolve_metrics("osediff")]
    assert names == ["psnr", "ssim", "lpips", "dists", "clipiqa", "niqe", "musiq", "maniqa"]
    spec = resolve_metrics("psnr@crop_border=4,ssim")[0]
    assert spec.options["crop_border"] == 4
    assert spec.settings_hash != get_metric("psnr").settings_hash  # a different setting is a different score
    assert get_metric("ms_ssim").kind == "FR"  # any pyiqa per-image metric works
    with pytest.raises(KeyError, match="did you mean 'psnr'"):
        get_metric("psnrr")
    with pytest.raises(ValueError, match="key=value"):
        resolve_metrics("psnr@crop_border")
    with pytest.raises(ValueError, match="no metrics"):
        resolve_metrics("")


def test_settings_record_pyiqa_version():
    import pyiqa

    s = get_metric("niqe").settings
    assert s["pyiqa_version"] == pyiqa.__version__
    assert get_metric("niqe").record().settings_hash == get_metric("niqe").settings_hash


def test_psnr_ssim_equal_pyiqa_and_published_drealsr(drealsr_dir):
    """The paper protocol: pyiqa psnr/ssim with Y of YCbCr reproduce OSEDiff's published values."""
    import pyiqa

    sr = read_image(drealsr_dir / "osediff" / "Canon_10_x1.png").tensor()
    hr = read_image(drealsr_dir / "test_HR" / "Canon_10_x1.png").tensor()
    for name, published in (("psnr", 29.260979), ("ssim", 0.892310)):
        spec = get_metric(name)
        ours = float(MetricModel(spec)(sr, hr)[0])
        ref = pyiqa.create_metric(name, device="cpu", **spec.options)(
            str(drealsr_dir / "osediff" / "Canon_10_x1.png"), str(drealsr_dir / "test_HR" / "Canon_10_x1.png")
        )
        assert ours == pytest.approx(float(ref), abs=1e-9)
        assert ours == pytest.approx(published, abs=1e-5)


def _basicsr_psnr_y(sr: np.ndarray, hr: np.ndarray) -> float:
    """Independent BasicSR-convention PSNR-Y: BT.601 limited-range Y (16..235) of 8-bit RGB,
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in [0, 255] (BasicSR's
    ``rgb2ycbcr(y_only=True)``), then 10 log10(255^2 / MSE) in float64."""
    def y(img):
        img = img.astype(np.float64)
        return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0

    mse = np.mean((y(sr) - y(hr)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize("stem", ["Canon_10_x1", "DSC_1404_x1", "sony_54_x1"])
def test_psnr_y_against_independent_basicsr_convention(stem, drealsr_dir):
    sr = read_image(drealsr_dir / "osediff" / f"{stem}.png")
    hr = read_image(drealsr_dir / "test_HR" / f"{stem}.png")
    ours = float(MetricModel(get_metric("psnr"))(sr.tensor(), hr.tensor())[0])
    # pyiqa computes in float32 on [0, 1] images: agreement to ~1e-4 dB
    assert ours == pytest.approx(_basicsr_psnr_y(sr.array, hr.array), abs=2e-4)


def test_calibration_psnr_ssim_niqe_tid2013(calibration_dir):
    """Against pyiqa's calibration table for TID2013 I03/I04/I06 with the settings it used
    (pyiqa defaults: PSNR on RGB, SSIM on YIQ Y; NIQE with the official parameters)."""
    assert check_weights(get_metric("niqe")) is None  # installs the shipped official parameters
    official = {"niqe": {"I03.bmp": 15.7536, "I04.bmp": 3.6549, "I06.bmp": 3.2355}}
    for name, spec, tol in (
        ("psnr", get_metric("psnr", test_y_channel=False), 1e-3),
        ("ssim", get_metric("ssim", color_space="yiq"), 1e-3),
        ("niqe", get_metric("niqe"), 5e-3),
    ):
        model = MetricModel(spec)
        for img, expected in _calibration(calibration_dir, name).items():
            dist = read_image(calibration_dir / "dist_dir" / img).tensor()
            ref = read_image(calibration_dir / "ref_dir" / img).tensor()
            value = float(model(dist, ref if spec.kind == "FR" else None)[0])
            assert value == pytest.approx(expected, abs=tol * max(1.0, abs(expected))), (name, img)
    # NIQE's official (MATLAB) values: I04/I06 agree to 1e-3 of pyiqa's, I03 is a known 0.6% gap
    niqe = MetricModel(get_metric("niqe"))
    for img in ("I04.bmp", "I06.bmp"):
        v = float(niqe(read_image(calibration_dir / "dist_dir" / img).tensor())[0])
        assert v == pytest.approx(official["niqe"][img], abs=2e-3)


def test_missing_weights_reported_not_computed():
    msg = check_weights(get_metric("musiq"))
    assert msg is not None and "musiq_koniq_ckpt" in msg and "hub/pyiqa" in msg


def test_lpips_random_weights_equal_pyiqa_and_batch_equals_singles(lpips_random_weights, drealsr_dir):
    import pyiqa

    spec = get_metric("lpips")
    assert check_weights(spec) is None
    files = [drealsr_dir / "osediff" / f"{s}.png" for s in ("Canon_10_x1", "IMG_107_x1")]
    hr = drealsr_dir / "test_HR" / "Canon_10_x1.png"
    model = MetricModel(spec)
    singles = [float(model(read_image(f).tensor(), read_image(hr).tensor())[0]) for f in files]
    batch = torch.cat([read_image(f).tensor() for f in files])
    batched = model(batch, read_image(hr).tensor().expand(2, -1, -1, -1)).tolist()
    assert batched == pytest.approx(singles, abs=1e-6)
    ref = pyiqa.create_metric("lpips", device="cpu")
    for f, v in zip(files, singles, strict=True):
        assert v == pytest.approx(float(ref(str(f), str(hr))), abs=1e-7)


class _InplaceProbe(torch.nn.Module):
    """Stands in for A-FINE: asserts its size rule and normalises its input in place, as pyiqa's does."""

    def forward(self, x):
        assert x.shape[-1] % 32 == 0 and x.shape[-2] % 32 == 0
        x.sub_(0.5)
        return x.mean(dim=(1, 2, 3))


def test_crop32_policy_and_inputs_are_copied():
    spec = get_metric("afine_nr")
    model = MetricModel(spec)
    model.__dict__["model"] = _InplaceProbe()  # no CLIP weights here; the policy is what is tested
    x = torch.rand(1, 3, 70, 100)
    before = x.clone()
    out = model(x)
    assert torch.equal(x, before)  # the caller's tensor is untouched
    centre = before[..., 3:67, 2:98]  # 70 -> 64 (top 3), 100 -> 96 (left 2)
    assert float(out[0]) == pytest.approx(float((centre - 0.5).mean()), abs=1e-6)
    assert spec.settings["size_policy"] == "crop32"
    with pytest.raises(ValueError, match="at least 32x32"):
        model(torch.rand(1, 3, 20, 40))


def _write_random(metric: str, make_state: dict) -> None:
    """Random weights at every cache path ``metric`` reads (file name -> state-dict factory)."""
    from benchmark.weights import metric_weight_files

    for wf in metric_weight_files(metric):
        if not wf.present:
            wf.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(make_state[wf.name](), wf.path)


def _random_timm_backbone(metric: str, timm_name: str) -> None:
    """Random timm backbone weights laid out as a Hugging Face cache snapshot (offline load)."""
    import timm
    from safetensors.torch import save_file

    from benchmark.weights import metric_weight_files

    for wf in metric_weight_files(metric):
        if wf.hf_repo is not None and not wf.present:
            wf.path.parent.mkdir(parents=True, exist_ok=True)
            sd = {k: v.contiguous() for k, v in timm.create_model(timm_name, pretrained=False).state_dict().items()}
            save_file(sd, str(wf.path))
            ref = wf.path.parents[2] / "refs" / "main"
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(wf.path.parent.name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["musiq", "dists", "topiq_nr", "maniqa"])
def test_learned_metrics_with_random_weights_equal_pyiqa(name, tmp_path, drealsr_dir):
    """Harness == pyiqa for the same (random, written on purpose) weights and inputs: proves the
    loading and plumbing of learned metrics. (CLIPIQA and A-FINE load OpenAI CLIP files whose
    sha256 the loader enforces, so random stand-ins are impossible; they need the real files.)"""
    import pyiqa
    import torchvision
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.manual_seed(0)
    from pyiqa.archs.maniqa_arch import MANIQA
    from pyiqa.archs.topiq_arch import CFANet

    if name in ("topiq_nr", "maniqa"):
        _random_timm_backbone(get_metric(name).pyiqa_name, "resnet50" if name == "topiq_nr" else "vit_base_patch8_224")
    _write_random(get_metric(name).pyiqa_name, {
        "cfanet_nr_koniq_res50-9a73138b.pth": lambda: {"params": CFANet(
            semantic_model_name="resnet50", model_name="cfanet_nr_koniq_res50", use_ref=False,
            pretrained=False).state_dict()},
        "musiq_koniq_ckpt-e95806b9.pth": lambda: MUSIQ(pretrained=False).state_dict(),
        "MANIQA_PIPAL-ae6d356b.pth": lambda: MANIQA(train_dataset="pipal", pretrained=False).state_dict(),
        "vgg16-397923af.pth": lambda: torchvision.models.vgg16().state_dict(),
        "DISTS_weights-f5e65c96.pth": lambda: {"alpha": torch.rand(1, 1475, 1, 1) * 0.1,
                                               "beta": torch.rand(1, 1475, 1, 1) * 0.1},
    })  # fmt: skip
    spec = get_metric(name)
    assert check_weights(spec) is None
    sr = drealsr_dir / "osediff" / "Canon_10_x1.png"
    hr = drealsr_dir / "test_HR" / "Canon_10_x1.png"
    ours = float(MetricModel(spec)(read_image(sr).tensor(), read_image(hr).tensor() if spec.kind == "FR" else None)[0])
    ref = pyiqa.create_metric(spec.pyiqa_name, device="cpu", **spec.options)
    theirs = float(ref(str(sr), str(hr)) if spec.kind == "FR" else ref(str(sr)))
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)


def test_weight_catalogue_lookup_is_an_unknown_name_error():
    from benchmark.weights import metric_weight_files

    with pytest.raises(UnknownNameError) as exc:
        metric_weight_files("lpip")
    assert str(exc.value).startswith("unknown metric in the weight catalogue 'lpip' (did you mean 'lpips'?)")
