"""Autoencoders: the diffusers-backed encode/decode, light decoder layout, Qwen 2-D inflation, tiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vosr.autoencoders import (
    AUTOENCODERS,
    KLAutoencoder,
    QwenImageAutoencoder,
    blend_tiles,
    build_light_decoder,
    load_autoencoder,
    load_light_decoder,
    tiny_kl_config,
)
from vosr.checkpoints import CheckpointMismatchError
from vosr.config import ConfigError

LIGHT_CONFIG = {"in_channels": 4, "out_channels": 3, "block_out_channels": [8, 8, 8, 8], "layers_per_block": 2,
                "norm_num_groups": 4}  # fmt: skip


def tiny_kl(tmp_path: Path) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    folder = tmp_path / AUTOENCODERS["tiny-kl"][0]
    AutoencoderKL(**tiny_kl_config()).save_pretrained(folder, safe_serialization=True)
    return folder


def test_kl_encode_matches_diffusers_posterior(tmp_path: Path) -> None:
    tiny_kl(tmp_path)
    ae = load_autoencoder("tiny-kl", weights_dir=tmp_path, decoder="vae")
    assert isinstance(ae, KLAutoencoder) and ae.latent_channels == 4 and ae.downscale == 8
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        mode = ae.encode(images, sample=False)
        dist = ae.vae.encode(images * 2 - 1).latent_dist
        torch.testing.assert_close(mode, dist.mode() * 0.18215, rtol=1e-5, atol=1e-6)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        s1, s2 = ae.encode(images, g1), ae.encode(images, g2)
        assert s1.shape == (2, 4, 4, 6)
        torch.testing.assert_close(s1, s2)  # same generator state, same posterior sample
        # the sample is mean + std * N(0, 1)
        noise = torch.randn(dist.mean.shape, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(s1, (dist.mean + dist.std * noise) * 0.18215, rtol=1e-5, atol=1e-6)
        out = ae.decode(mode)
        assert out.shape == (2, 3, 32, 48) and 0 <= out.min() and out.max() <= 1
        ref = ((ae.vae.decode(mode / 0.18215).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 8"):
        ae.encode(torch.rand(1, 3, 30, 32))


def test_light_decoder_layout_and_loading(tmp_path: Path) -> None:
    dec = build_light_decoder(LIGHT_CONFIG)
    keys = set(dec.state_dict())
    # diffusers Decoder names without a "decoder." prefix, 3 resnets per up block, 1-head mid attention
    assert "conv_in.weight" in keys and "up_blocks.0.resnets.2.conv1.weight" in keys
    assert "mid_block.attentions.0.to_q.weight" in keys and not any(k.startswith("decoder.") for k in keys)
    assert dec.mid_block.attentions[0].heads == 1
    path = tmp_path / "sd21_lwdecoder.pth"
    torch.save({"config": LIGHT_CONFIG, "model_state_dict": dec.state_dict()}, path)
    loaded = load_light_decoder(path)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), dec.eval()(z))
    # the released config builds the released shapes (half width of the SD decoder)
    with torch.device("meta"):
        real = build_light_decoder({"in_channels": 4, "out_channels": 3, "block_out_channels": [64, 128, 256, 256],
                                    "layers_per_block": 2})  # fmt: skip
    assert real.conv_in.weight.shape == (256, 4, 3, 3) and real.conv_out.weight.shape == (3, 64, 3, 3)
    bad = dict(dec.state_dict())
    bad.pop("conv_out.bias")
    torch.save({"config": LIGHT_CONFIG, "model_state_dict": bad}, path)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)sd21_lwdecoder\.pth.*conv_out\.bias"):
        load_light_decoder(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match="'config' and 'model_state_dict'"):
        load_light_decoder(path)
    with pytest.raises(FileNotFoundError, match="--decoder vae"):
        load_light_decoder(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="unknown key 'layers'"):
        build_light_decoder({**LIGHT_CONFIG, "layers": 1})


def test_kl_with_light_decoder(tmp_path: Path) -> None:
    folder = tiny_kl(tmp_path)
    dec = build_light_decoder(LIGHT_CONFIG)
    torch.save({"config": LIGHT_CONFIG, "model_state_dict": dec.state_dict()}, folder / "sd21_lwdecoder.pth")
    ae = load_autoencoder("tiny-kl", weights_dir=tmp_path, decoder="light")
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(ae.decode(z), ((dec.eval()(z / 0.18215) + 1) / 2).clamp(0, 1))


def qwen_folder(tmp_path: Path, two_d: bool) -> tuple[Path, torch.nn.Module]:
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1)
    folder = tmp_path / AUTOENCODERS["qwen-image"][0]
    vae.save_pretrained(folder, safe_serialization=True)
    if two_d:  # the image-only variant: 2-D kernels = the causal kernels' last temporal tap
        from safetensors.torch import load_file, save_file

        state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
        flat = {k: (v[:, :, -1].contiguous() if v.ndim == 5 else v) for k, v in state.items()}
        save_file(flat, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder, vae.eval()


@pytest.mark.parametrize("two_d", [False, True])
def test_qwen_image_vae_single_frame(tmp_path: Path, two_d: bool) -> None:
    folder, vae = qwen_folder(tmp_path, two_d)
    ae = load_autoencoder("qwen-image", weights_dir=tmp_path)
    assert isinstance(ae, QwenImageAutoencoder) and ae.latent_channels == 16
    images = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        z = ae.encode(images, sample=False)
        ref = vae.encode((images * 2 - 1)[:, :, None]).latent_dist.mode()[:, :, 0]
        mean = torch.tensor(json.loads((folder / "config.json").read_text())["latents_mean"]).view(
            1, -1, 1, 1
        )
        std = torch.tensor(json.loads((folder / "config.json").read_text())["latents_std"]).view(1, -1, 1, 1)
        torch.testing.assert_close(z, (ref - mean) / std, rtol=1e-4, atol=1e-5)
        assert z.shape == (1, 16, 4, 5)
        out = ae.decode(z)
        ref_img = ((vae.decode((z * std + mean)[:, :, None]).sample[:, :, 0] + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(out, ref_img, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="SD2.1 VAE only"):
        load_autoencoder("qwen-image", weights_dir=tmp_path, decoder="light")


def test_missing_autoencoder_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tiny-kl-vae/config\.json is missing.*--weights-dir"):
        load_autoencoder("tiny-kl", weights_dir=tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'sd21'"):
        load_autoencoder("sd2l")


def test_blend_tiles_exact_for_pointwise_and_one_tile() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 37, 50)
    fn = torch.tanh
    torch.testing.assert_close(blend_tiles(fn, x, 64, 8, 1.0), fn(x), rtol=0, atol=0)  # one tile
    torch.testing.assert_close(blend_tiles(fn, x, 16, 4, 1.0), fn(x), rtol=0, atol=1e-6)
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=8, mode="nearest")  # noqa: E731
    torch.testing.assert_close(blend_tiles(up, x, 16, 4, 8.0), up(x), rtol=0, atol=1e-6)
    down = lambda t: torch.nn.functional.avg_pool2d(t, 8)  # noqa: E731
    xx = torch.randn(1, 2, 96, 136)
    torch.testing.assert_close(blend_tiles(down, xx, 32, 8, 1 / 8), down(xx), rtol=0, atol=1e-6)


def test_tiled_vae_paths(tmp_path: Path) -> None:
    """Tiled encode/decode: exact when one tile covers; otherwise whole-size, finite outputs.

    (GroupNorm and the mid-block attention see per-tile statistics, so a random-weight VAE's
    tiled output is not close to the untiled one; the blending itself is tested exactly above.)
    """
    tiny_kl(tmp_path)
    ae = load_autoencoder("tiny-kl", weights_dir=tmp_path, decoder="vae")
    images = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        z = ae.encode(images, sample=False)
        torch.testing.assert_close(ae.encode(images, sample=False, tile=256), z, rtol=0, atol=0)
        zt = ae.encode(images, sample=False, tile=64, overlap=32)
        g = torch.Generator().manual_seed(0)
        zs = ae.encode(images, g, tile=64, overlap=32)
        noise = torch.randn(zt.shape, generator=torch.Generator().manual_seed(0))
        # one global posterior sample drawn after blending: tiling does not change the noise
        assert ((zs - zt) * noise).sum() > 0
        img, imgt = ae.decode(z), ae.decode(z, tile=8, overlap=4)
    assert zt.shape == z.shape and torch.isfinite(zt).all()
    assert imgt.shape == img.shape == (1, 3, 128, 160) and torch.isfinite(imgt).all()
    torch.testing.assert_close(ae.decode(z, tile=32), img, rtol=0, atol=0)
