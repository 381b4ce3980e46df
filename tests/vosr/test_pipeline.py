"""VOSRUpscaler end to end on CPU with random tiny weights through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _vosr_helpers import tiny_weights

from vosr.config import ConfigError
from vosr.pipeline import VOSRUpscaler, adain_color_fix, check_image, color_fix, gaussian_color_fix, seed_for


@pytest.fixture(scope="module")
def weights() -> dict:
    return tiny_weights()


def lr_image(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy / h, xx / w, (yy + xx) / (h + w)], -1) * 200 + rng.uniform(0, 55, (h, w, 3))
    return base.astype(np.uint8)


@pytest.mark.parametrize("kind", ["checkpoint_ms", "checkpoint_os"])
@pytest.mark.parametrize(("h", "w", "u"), [(20, 28, 4), (17, 23, 4), (15, 15, 2)])
def test_sr_image_of_the_right_size(weights: dict, kind: str, h: int, w: int, u: int) -> None:
    up = VOSRUpscaler(weights[kind], steps=2, weights_dir=weights["root"])
    out = up(lr_image(h, w), u, name="x.png")
    assert out.shape == (h * u, w * u, 3) and out.dtype == np.uint8
    assert out.std() > 1  # not a constant image
    assert up.nfe_last == (2 * 2 if kind == "checkpoint_ms" else 2)


def test_default_steps_and_network_evaluations(weights: dict) -> None:
    ms = VOSRUpscaler(weights["checkpoint_ms"], weights_dir=weights["root"])
    assert (ms.sampling.steps, ms.sampling.guidance, ms.sampling.weak_strength) == (25, 0.5, 0.15)
    ms(lr_image(8, 8), 4, name="a")
    assert ms.nfe_last == 50  # 25 guided steps, both branches
    os_ = VOSRUpscaler(weights["checkpoint_os"], weights_dir=weights["root"])
    os_(lr_image(8, 8), 4, name="a")
    assert os_.sampling.steps == 1 and os_.nfe_last == 1


def test_noise_depends_on_name_not_order(weights: dict) -> None:
    a, b = lr_image(seed=1), lr_image(seed=2)
    up = VOSRUpscaler(weights["checkpoint_ms"], steps=2, weights_dir=weights["root"])
    first = [up(a, 4, name="a.png"), up(b, 4, name="b.png")]
    up2 = VOSRUpscaler(weights["checkpoint_ms"], steps=2, weights_dir=weights["root"])
    second = [up2(b, 4, name="b.png"), up2(a, 4, name="a.png")]
    np.testing.assert_array_equal(first[0], second[1])
    np.testing.assert_array_equal(first[1], second[0])
    other_name = up(a, 4, name="c.png")
    assert np.abs(other_name.astype(int) - first[0]).max() > 0
    other_seed = VOSRUpscaler(weights["checkpoint_ms"], steps=2, seed=1, weights_dir=weights["root"])(
        a, 4, name="a.png"
    )
    assert np.abs(other_seed.astype(int) - first[0]).max() > 0
    assert seed_for(0, "a", "noise") != seed_for(0, "a", "vae") != seed_for(1, "a", "vae")


def test_every_setting_changes_the_output(weights: dict) -> None:
    img = lr_image()
    root = weights["root"]
    base = VOSRUpscaler(weights["checkpoint_ms"], steps=2, weights_dir=root)(img, 4, name="a")
    for kw in ({"steps": 3}, {"guidance": -0.5}, {"weak_strength": 0.25}, {"color_fix": "wavelet"},
               {"color_fix": "none"}, {"tile": 4, "tile_overlap": 2}, {"sample_posterior": False}):  # fmt: skip
        out = VOSRUpscaler(weights["checkpoint_ms"], **{"steps": 2, **kw}, weights_dir=root)(img, 4, name="a")
        assert out.shape == base.shape
        assert np.abs(out.astype(int) - base).max() > 0, kw


def test_tiling_when_one_tile_covers_is_identical(weights: dict) -> None:
    img = lr_image(20, 28)  # 80 x 112 px -> 10 x 14 latent
    root = weights["root"]
    plain = VOSRUpscaler(weights["checkpoint_os"], weights_dir=root)(img, 4, name="a")
    covered = VOSRUpscaler(weights["checkpoint_os"], tile=16, vae_tile=128, weights_dir=root)(
        img, 4, name="a"
    )
    np.testing.assert_array_equal(plain, covered)
    tiled = VOSRUpscaler(weights["checkpoint_os"], tile=6, tile_overlap=2, vae_tile=64, weights_dir=root)
    out = tiled(img, 4, name="a")
    # latent 10 x 14, tile 6, overlap 2: rows start at 0, 4 and columns at 0, 4, 8
    assert out.shape == plain.shape and tiled.nfe_last == 2 * 3
    batched = VOSRUpscaler(
        weights["checkpoint_os"], tile=6, tile_overlap=2, vae_tile=64, tile_batch=4, weights_dir=root
    )
    out_b = batched(img, 4, name="a")
    assert batched.nfe_last == 6 and np.abs(out_b.astype(int) - out).max() <= 1  # float rounding only


def test_color_fixes() -> None:
    torch.manual_seed(0)
    img = torch.rand(1, 3, 32, 40) * 0.5
    ref = torch.rand(1, 3, 32, 40) * 0.3 + 0.6
    fixed = adain_color_fix(img, ref)
    m = fixed.flatten(2).mean(-1)
    torch.testing.assert_close(m, ref.flatten(2).mean(-1), rtol=0, atol=2e-3)  # clamping moves it slightly
    torch.testing.assert_close(fixed.flatten(2).std(-1), ref.flatten(2).std(-1), rtol=0.05, atol=0)
    # the Gaussian split keeps the reference's low frequencies: a constant image gets ref's blur
    const = torch.full((1, 3, 32, 40), 0.5)
    g = gaussian_color_fix(const, ref)
    smooth_ref = gaussian_color_fix(ref, ref)
    torch.testing.assert_close(smooth_ref, ref.clamp(0, 1), rtol=0, atol=1e-6)  # image == ref: unchanged
    assert (g - const).abs().max() > 0.05 and g.std() < ref.std()
    torch.testing.assert_close(color_fix(img, ref, "none"), img)
    with pytest.raises(ConfigError, match="color fix 'ada'"):
        color_fix(img, ref, "ada")


def test_bad_inputs_are_named(weights: dict) -> None:
    up = VOSRUpscaler(weights["checkpoint_os"], weights_dir=weights["root"])
    with pytest.raises(ValueError, match=r"photo\.png: shape \(8, 8\) \(grayscale\)"):
        up(np.zeros((8, 8), np.uint8), 4, name="photo.png")
    with pytest.raises(ValueError, match=r"\(RGBA\).*convert it to 3-channel RGB"):
        up(np.zeros((8, 8, 4), np.uint8), 4)
    with pytest.raises(ValueError, match="dtype uint16, expected uint8"):
        up(np.zeros((8, 8, 3), np.uint16), 4)
    with pytest.raises(ValueError, match="upscale must be positive"):
        up(np.zeros((8, 8, 3), np.uint8), 0)
    with pytest.raises(TypeError, match="numpy uint8 array"):
        check_image([[1, 2, 3]])
    with pytest.raises(ConfigError, match="one-step .*leave --guidance unset"):
        VOSRUpscaler(weights["checkpoint_os"], guidance=0.5, weights_dir=weights["root"])
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        VOSRUpscaler(weights["checkpoint_ms"], steps=0, weights_dir=weights["root"])


def test_missing_weights_name_the_file_and_fix(weights: dict, tmp_path, monkeypatch) -> None:
    import shutil

    # empty default caches (other tests may have filled the session's ones)
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    # only the checkpoint, no autoencoder / encoder in the searched places
    shutil.copy(weights["checkpoint_os"], tmp_path / "ck.safetensors")
    with pytest.raises(FileNotFoundError, match=r"tiny-kl-vae/config\.json is missing.*--weights-dir"):
        VOSRUpscaler(tmp_path / "ck.safetensors", weights_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"released checkpoint vosr-0\.5b-os not found.*args\.json"):
        VOSRUpscaler("vosr-0.5b-os")
    with pytest.raises(FileNotFoundError, match="did you mean 'vosr-0.5b-os'"):
        VOSRUpscaler("vosr-0.5b-0s")


def test_bf16_networks_stay_close_to_fp32(weights: dict) -> None:
    """bf16 weights/activations, fp32 trajectory: the image moves by a few grey levels at most."""
    img = lr_image(16, 16)
    ref = VOSRUpscaler(weights["checkpoint_os"], weights_dir=weights["root"])(img, 4, name="a")
    half = VOSRUpscaler(weights["checkpoint_os"], dtype="bf16", weights_dir=weights["root"])
    assert next(half.model.parameters()).dtype == torch.bfloat16
    out = half(img, 4, name="a")
    assert out.shape == ref.shape
    assert np.abs(out.astype(float) - ref).mean() < 3.0
    with pytest.raises(ConfigError, match="dtype 'fp8' unknown"):
        VOSRUpscaler(weights["checkpoint_os"], dtype="fp8", weights_dir=weights["root"])
