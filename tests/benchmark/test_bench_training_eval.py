"""The training callback's means: every step covers the same images, or says it cannot."""

from __future__ import annotations

import numpy as np
import pytest

import benchmark.metrics
import benchmark.training_eval


class _Nearest:
    """Stands in for the VOSR method (no checkpoint here): nearest-neighbour upscaling."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)

    def close(self) -> None:
        pass


def test_a_metric_failing_on_one_image_is_nan_not_a_mean_over_fewer(tmp_path, monkeypatch, capsys, make_generic):
    from benchmark.training_eval import make_eval_callback

    ds = make_generic(tmp_path / "toy", n=3)
    monkeypatch.setattr(benchmark.training_eval, "VOSRMethod", _Nearest)
    real_call = benchmark.metrics.MetricModel.__call__
    calls = {"n": 0}

    def flaky(self, sr, hr=None):
        calls["n"] += 1
        out = real_call(self, sr, hr)
        return out * float("nan") if calls["n"] == 2 else out  # the second image gives NaN

    cb = make_eval_callback(ds, metrics=["psnr"], device="cpu", max_images=3)
    good = cb(1, tmp_path)
    assert np.isfinite(good["psnr"])
    monkeypatch.setattr(benchmark.metrics.MetricModel, "__call__", flaky)
    bad = cb(2, tmp_path)
    assert np.isnan(bad["psnr"])
    err = capsys.readouterr().err
    assert "step 2: metric psnr gave nan on img_1" in err and "img_1.png" in err


def test_callback_mean_is_over_all_images(tmp_path, monkeypatch, make_generic):
    from benchmark.images import read_image
    from benchmark.metrics import MetricModel, get_metric
    from benchmark.training_eval import make_eval_callback

    ds = make_generic(tmp_path / "toy", n=3)
    monkeypatch.setattr(benchmark.training_eval, "VOSRMethod", _Nearest)
    got = make_eval_callback(ds, metrics=["psnr"], device="cpu", max_images=3)(1, tmp_path)["psnr"]
    import torch

    model = MetricModel(get_metric("psnr"), "cpu")
    ref = []
    for k in range(3):
        lr, hr = read_image(ds / "lr" / f"img_{k}.png"), read_image(ds / "hr" / f"img_{k}.png")
        sr = torch.from_numpy(_Nearest().upscale(lr.array, 4).transpose(2, 0, 1).copy()).float().div(255)[None]
        ref.append(float(model(sr, hr.tensor())[0]))
    assert got == pytest.approx(np.mean(ref), abs=1e-9)
