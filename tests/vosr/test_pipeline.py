"""VOSRUpscaler end to end on CPU with random tiny weights through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vosr.config import ConfigError, SamplingConfig
from vosr.pipeline import VOSRUpscaler, check_image, seed_for


@pytest.fixture(scope="module")
def weights(tiny_weights) -> dict:
    return tiny_weights


def lr_image(h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy / h, xx / w, (yy + xx) / (h + w)], -1) * 200 + rng.uniform(0, 55, (h, w, 3))
    return base.astype(np.uint8)


@pytest.mark.parametrize("kind", ["checkpoint_ms", "checkpoint_os"])
@pytest.mark.parametrize(("h", "w", "u"), [(20, 28, 4), (17, 23, 4), (15, 15, 2)])
def test_sr_image_of_the_right_size(weights: dict, kind: str, h: int, w: int, u: int) -> None:
    up = VOSRUpscaler(weights[kind], SamplingConfig(steps=2), weights_dir=weights["root"])
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
    up = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=2), weights_dir=weights["root"])
    first = [up(a, 4, name="a.png"), up(b, 4, name="b.png")]
    up2 = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=2), weights_dir=weights["root"])
    second = [up2(b, 4, name="b.png"), up2(a, 4, name="a.png")]
    np.testing.assert_array_equal(first[0], second[1])
    np.testing.assert_array_equal(first[1], second[0])
    other_name = up(a, 4, name="c.png")
    assert np.abs(other_name.astype(int) - first[0]).max() > 0
    other_seed = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=2, seed=1), weights_dir=weights["root"])(
        a, 4, name="a.png"
    )
    assert np.abs(other_seed.astype(int) - first[0]).max() > 0
    assert seed_for(0, "a", "noise") != seed_for(0, "a", "vae") != seed_for(1, "a", "vae")


def test_every_setting_changes_the_output(weights: dict) -> None:
    img = lr_image()
    root = weights["root"]
    base = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=2), weights_dir=root)(img, 4, name="a")
    for kw in ({"steps": 3}, {"guidance": -0.5}, {"weak_strength": 0.25}, {"color_fix": "wavelet"},
               {"color_fix": "none"}, {"tile": 4, "tile_overlap": 2}, {"sample_posterior": False}):  # fmt: skip
        out = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(**{"steps": 2, **kw}), weights_dir=root)(img, 4, name="a")
        assert out.shape == base.shape
        assert np.abs(out.astype(int) - base).max() > 0, kw


def test_tiling_when_one_tile_covers_is_identical(weights: dict) -> None:
    img = lr_image(20, 28)  # 80 x 112 px -> 10 x 14 latent
    root = weights["root"]
    plain = VOSRUpscaler(weights["checkpoint_os"], weights_dir=root)(img, 4, name="a")
    # rect layout: a 16-latent tile covers 10 x 14, the untiled path bit for bit
    covered = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=16, tile_layout="rect", vae_tile=128), weights_dir=root)
    np.testing.assert_array_equal(plain, covered(img, 4, name="a"))
    assert covered.nfe_last == 1 and covered.semantic_passes_last == 1
    # a square image covered by one square tile: identical in the release layout too
    sq = lr_image(16, 16)
    np.testing.assert_array_equal(
        VOSRUpscaler(weights["checkpoint_os"], weights_dir=root)(sq, 4, name="a"),
        VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=16), weights_dir=root)(sq, 4, name="a"),
    )
    tiled = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=6, tile_overlap=2, tile_layout="rect", vae_tile=64), weights_dir=root)  # fmt: skip
    out = tiled(img, 4, name="a")
    # latent 10 x 14, tile 6, overlap 2: rows start at 0, 4 and columns at 0, 4, 8
    assert out.shape == plain.shape and tiled.nfe_last == 2 * 3
    batched = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=6, tile_overlap=2, tile_layout="rect", vae_tile=64), tile_batch=4, weights_dir=root)  # fmt: skip
    out_b = batched(img, 4, name="a")
    assert batched.nfe_last == 6
    # float rounding only: the decoded images agree to 1e-5, and the 8-bit outputs by one level
    up = torch.from_numpy(np.array(Image.fromarray(img).resize((112, 80), Image.Resampling.BICUBIC)))
    up = up.permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(batched.upscale_tensor(up, name="a"), tiled.upscale_tensor(up, name="a"),
                               rtol=0, atol=1e-5)  # fmt: skip
    assert np.abs(out_b.astype(int) - out).max() <= 1


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
        VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(guidance=0.5), weights_dir=weights["root"])
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=0), weights_dir=weights["root"])


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


# --- release parity: noise, 8-bit conversion, tiles, presets ---------------------------------


def _released_adain(sr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The released adain_color_fix on uint8 images (to_tensor floats, torch.std + 1e-5, to_pil)."""
    from torchvision.transforms.functional import to_pil_image, to_tensor

    t, s = to_tensor(Image.fromarray(sr))[None], to_tensor(Image.fromarray(ref))[None]
    tm, ts = t.mean(dim=[2, 3], keepdim=True), t.std(dim=[2, 3], keepdim=True) + 1e-5
    sm, ss = s.mean(dim=[2, 3], keepdim=True), s.std(dim=[2, 3], keepdim=True) + 1e-5
    return np.asarray(to_pil_image(torch.clamp(((t - tm) / ts * ss + sm)[0], 0, 1)))


def test_release_noise_reenacts_the_released_draw_sequence(weights: dict) -> None:
    """``noise="release"`` equals the released script's sequence written out by hand: one
    ``torch.manual_seed(42)``, then per file in sorted order the VAE posterior sample (diffusers'
    ``latent_dist.sample()`` on the global generator) and ``randn_like`` initial noise, guided
    Euler, decode, ``ToPILImage`` truncation and the released AdaIN."""
    from torchvision.transforms.functional import to_pil_image, to_tensor

    root = weights["root"]
    images = {
        "b.png": lr_image(16, 20, seed=3),
        "a.png": lr_image(12, 12, seed=4),
        "c.png": lr_image(8, 16, seed=5),
    }
    up = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=3, noise="release"), weights_dir=root)
    assert up.sampling.seed == 42 and up.settings["noise_device"] == "cpu"
    ours = {n: up(images[n], 4, name=n) for n in sorted(images)}
    up.reset_noise()  # deterministic: the same run again gives the same images
    for n in sorted(images):
        np.testing.assert_array_equal(up(images[n], 4, name=n), ours[n])

    vae, model, encoder = up.autoencoder.vae, up.model, up.encoder
    ts = torch.linspace(1.0, 0.0, 4)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(42)
        for n in sorted(images):
            h, w = images[n].shape[:2]
            up_img = Image.fromarray(images[n]).resize((w * 4, h * 4), Image.BICUBIC)
            lq = to_tensor(up_img)[None] * 2.0 - 1.0
            lq_latent = vae.encode(lq).latent_dist.sample() * vae.config.scaling_factor  # draw 1
            z = torch.randn_like(lq_latent)  # draw 2
            sem = encoder(to_tensor(up_img)[None])
            for i in range(3):
                x = torch.cat([torch.cat([lq_latent, z], 1), torch.cat([0.15 * lq_latent, z], 1)])
                v = model(x, torch.full((2,), float(ts[i])), torch.cat([sem, torch.zeros_like(sem)]))
                v_cond, v_pcond = v.chunk(2)
                z = z - (float(ts[i]) - float(ts[i + 1])) * (v_pcond + 0.5 * (v_cond - v_pcond))
            sr = vae.decode(z / vae.config.scaling_factor).sample.clamp(-1, 1)
            sr_img = np.asarray(to_pil_image(sr[0] * 0.5 + 0.5))
            np.testing.assert_array_equal(ours[n], _released_adain(sr_img, np.asarray(up_img)), err_msg=n)

    # per-image noise (the default) is another, order-independent draw
    per_image = VOSRUpscaler(weights["checkpoint_ms"], SamplingConfig(steps=3), weights_dir=root)
    assert per_image.sampling.seed == 0 and "noise_device" not in per_image.settings
    assert not np.array_equal(per_image(images["a.png"], 4, name="a.png"), ours["a.png"])
    # skipping an image draws what it would have drawn: the next image is unchanged
    up.reset_noise()
    up.skip_noise(images["a.png"].shape[:2], 4)
    np.testing.assert_array_equal(up(images["b.png"], 4, name="b.png"), ours["b.png"])


def test_default_output_is_the_released_8bit_path(weights: dict) -> None:
    """Default quantize: the decoded image truncated to 8 bits, the colour fix on that uint8 image,
    truncated again; ``quantize="round"`` keeps the float fix with one rounding."""
    root = weights["root"]
    img = lr_image(12, 16)
    up = VOSRUpscaler(weights["checkpoint_os"], weights_dir=root)
    assert (up.sampling.quantize, up.sampling.color_fix) == ("release", "adain")
    assert up.settings["sampling"]["quantize"] == "release"
    out = up(img, 4, name="a")
    bicubic = np.array(Image.fromarray(img).resize((64, 48), Image.BICUBIC))
    decoded = up.upscale_tensor(torch.from_numpy(bicubic).permute(2, 0, 1)[None].float() / 255.0, name="a")
    truncated = (decoded[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, _released_adain(truncated, bicubic))
    rounded = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(quantize="round", color_fix="none"), weights_dir=root)
    plain = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(color_fix="none"), weights_dir=root)
    r, t = rounded(img, 4, name="a").astype(int), plain(img, 4, name="a").astype(int)
    np.testing.assert_array_equal(t, truncated)
    assert set(np.unique(r - t)) <= {0, 1} and 0.2 < (r - t).mean() < 0.8  # the +0.5 level bias
    assert rounded.settings["sampling"]["quantize"] == "round"


def test_tiles_take_their_own_semantic_tokens_only(weights: dict) -> None:
    """When tiling, DINOv2 runs once per tile on the tile's region, never on the whole image."""
    img = lr_image(20, 28)  # 80 x 112 px -> 10 x 14 latent
    root = weights["root"]

    def spy(up: VOSRUpscaler) -> list[tuple[int, int]]:
        calls: list[tuple[int, int]] = []
        encoder = up.encoder

        def counted(x: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(x.shape[-2:]))
            return encoder(x)

        up.encoder = counted
        return calls

    up = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=6, tile_overlap=2), weights_dir=root)
    calls = spy(up)
    up(img, 4, name="a")
    assert calls == [(48, 48)] * 6  # rows 0, 4 x columns 0, 4, 8 of 6-latent tiles
    plain = VOSRUpscaler(weights["checkpoint_os"], weights_dir=root)
    calls = spy(plain)
    plain(img, 4, name="a")
    assert calls == [(80, 112)]


def test_release_tile_layout_for_non_square_images(weights: dict) -> None:
    """Released layout: square tiles of min(tile, h, w); overlap max(32 px / 8, tile / 8) one-step."""
    img = lr_image(20, 28)  # latent 10 x 14
    root = weights["root"]
    up = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=16), weights_dir=root)
    assert (up.sampling.tile, up.sampling.tile_overlap, up.sampling.tile_layout) == (16, 4, "release")
    out = up(img, 4, name="a")
    # tile min(16, 10, 14) = 10, overlap min(4, 9) = 4: one row, columns at 0 and 4
    assert up.nfe_last == 2 and out.shape == (80, 112, 3)
    rect = VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(tile=16, tile_layout="rect"), weights_dir=root)
    assert rect.sampling.tile_overlap == 4  # min(16, 16 // 4)
    rect(img, 4, name="a")
    assert rect.nfe_last == 1  # a 16-latent rect tile covers 10 x 14


def test_guidance_presets(weights: dict) -> None:
    root = weights["root"]
    ms = weights["checkpoint_ms"]
    assert VOSRUpscaler(ms, SamplingConfig(steps=1, preset="realsr"), weights_dir=root).sampling.guidance == -0.5
    screensr = VOSRUpscaler(ms, SamplingConfig(steps=1, preset="screensr"), weights_dir=root)
    default = VOSRUpscaler(ms, SamplingConfig(steps=1), weights_dir=root)
    assert screensr.sampling.guidance == default.sampling.guidance == 0.5
    assert screensr.settings == default.settings  # the preset resolves into guidance
    assert (
        VOSRUpscaler(ms, SamplingConfig(steps=1, preset="realsr", guidance=0.25), weights_dir=root).sampling.guidance == 0.25
    )
    with pytest.raises(ConfigError, match="preset 'real' unknown.*did you mean 'realsr'"):
        VOSRUpscaler(ms, SamplingConfig(preset="real"), weights_dir=root)
    with pytest.raises(ConfigError, match="one-step .*drop the preset"):
        VOSRUpscaler(weights["checkpoint_os"], SamplingConfig(preset="realsr"), weights_dir=root)
