"""Autoencoders: the diffusers-backed encode/decode, light decoder layout, Qwen 2-D inflation, tiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vosr.autoencoders import (
    AUTOENCODERS,
    KLAutoencoder,
    QwenImageAutoencoder,
    build_light_decoder,
    load_autoencoder,
    load_light_decoder,
    tiny_kl_config,
)
from vosr.config import ConfigError
from vosr.statedict import CheckpointMismatchError
from vosr.tiling import blend_tiles

LIGHT_CONFIG = {"in_channels": 4, "out_channels": 3, "block_out_channels": [8, 8, 8, 8], "layers_per_block": 2,
                "norm_num_groups": 4}  # fmt: skip


def tiny_kl(tmp_path: Path) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    folder = tmp_path / AUTOENCODERS["tiny-kl"].folder
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
    folder = tmp_path / AUTOENCODERS["qwen-image"].folder
    vae.save_pretrained(folder, safe_serialization=True)
    if two_d:  # 2-D kernels = the causal kernels' last temporal tap (time_conv kept: a converted 3-D file)
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
    assert ae.key_report is not None and ae.key_report.absent == []  # time_conv present: nothing removed
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


# --- the released image-only 2-D folder (AutoencoderKLQwenImage2D.save_pretrained) ------------

# The keys the released 2-D class lacks at the released config (num_res_blocks 2, temporal
# down-sampling in the 2nd and 3rd stages), as the issue lists them.
QWEN_2D_ABSENT = sorted(
    f"{m}.time_conv.{p}"
    for m in ("encoder.down_blocks.5", "encoder.down_blocks.8", "decoder.up_blocks.0.upsamplers.0",
              "decoder.up_blocks.1.upsamplers.0")
    for p in ("weight", "bias")
)  # fmt: skip
QWEN_TINY_2D = {"base_dim": 4, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                "temperal_downsample": [False, True, True], "dropout": 0.0}  # fmt: skip


def qwen_2d_folder(root: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny ``Qwen-Image-vae-2d/`` folder with exactly the 2-D class's key set: the 3-D class's
    keys minus the 8 ``time_conv`` keys, 4-D conv kernels, (C, 1, 1) norm gammas, random values."""
    from diffusers import AutoencoderKLQwenImage
    from safetensors.torch import save_file

    shapes = {k: v.shape for k, v in AutoencoderKLQwenImage(**QWEN_TINY_2D).state_dict().items()}
    assert sorted(k for k in shapes if ".time_conv." in k) == QWEN_2D_ABSENT
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        if ".time_conv." in key:
            continue
        if len(shape) == 5:  # causal conv (out, in, t, kh, kw) -> 2-D conv (out, in, kh, kw)
            shape = (shape[0], shape[1], *shape[3:])
        elif key.endswith("gamma"):  # RMS-norm gain without a time axis
            shape = (shape[0], 1, 1)
        if key.endswith("gamma"):
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            value = 0.05 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            value = torch.randn(shape, generator=g) / fan_in**0.5
        state[key] = value
    folder = root / "Qwen-Image-vae-2d"
    folder.mkdir(parents=True)
    mean = [round(0.1 * i - 0.7, 4) for i in range(16)]
    std = [round(1.0 + 0.1 * i, 4) for i in range(16)]
    cfg = {
        "_class_name": "AutoencoderKLQwenImage2D",
        **QWEN_TINY_2D,
        "latents_mean": mean,
        "latents_std": std,
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder, state


class Reference2D:
    """The image-only Qwen-Image VAE written as plain 2-D ops over the 2-D state dict (no diffusers):
    RMS norm = F.normalize over channels * sqrt(C) * gamma; 3x3 convs padded 1; zero-pad (0, 1, 0, 1)
    + stride-2 conv to downsample; nearest-exact x2 + conv to upsample; one-head attention blocks."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        self.sd = sd

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.sd)

    def conv(self, x, key, stride=1, pad=None):
        w = self.sd[f"{key}.weight"]
        pad = w.shape[-1] // 2 if pad is None else pad
        return F.conv2d(x, w, self.sd[f"{key}.bias"], stride=stride, padding=pad)

    def norm(self, x, key):
        return F.normalize(x, dim=1) * x.shape[1] ** 0.5 * self.sd[f"{key}.gamma"]

    def res(self, x, key):
        h = self.conv(x, f"{key}.conv_shortcut") if f"{key}.conv_shortcut.weight" in self.sd else x
        x = self.conv(F.silu(self.norm(x, f"{key}.norm1")), f"{key}.conv1")
        x = self.conv(F.silu(self.norm(x, f"{key}.norm2")), f"{key}.conv2")
        return x + h

    def attn(self, x, key):
        B, C, H, W = x.shape
        qkv = self.conv(self.norm(x, f"{key}.norm"), f"{key}.to_qkv")  # (B, 3C, H, W)
        q, k, v = qkv.reshape(B, 1, 3 * C, H * W).permute(0, 1, 3, 2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        return x + self.conv(y.squeeze(1).permute(0, 2, 1).reshape(B, C, H, W), f"{key}.proj")

    def mid(self, x, key):
        return self.res(self.attn(self.res(x, f"{key}.resnets.0"), f"{key}.attentions.0"), f"{key}.resnets.1")

    def moments(self, x):
        x = self.conv(x, "encoder.conv_in")
        i = 0
        while self.has(f"encoder.down_blocks.{i}."):
            key = f"encoder.down_blocks.{i}"
            if f"{key}.resample.1.weight" in self.sd:
                x = self.conv(F.pad(x, (0, 1, 0, 1)), f"{key}.resample.1", stride=2, pad=0)
            else:
                x = self.res(x, key)
            i += 1
        x = self.mid(x, "encoder.mid_block")
        x = self.conv(F.silu(self.norm(x, "encoder.norm_out")), "encoder.conv_out")
        return self.conv(x, "quant_conv")

    def decode(self, z):
        x = self.conv(self.conv(z, "post_quant_conv"), "decoder.conv_in")
        x = self.mid(x, "decoder.mid_block")
        i = 0
        while self.has(f"decoder.up_blocks.{i}."):
            j = 0
            while self.has(f"decoder.up_blocks.{i}.resnets.{j}."):
                x = self.res(x, f"decoder.up_blocks.{i}.resnets.{j}")
                j += 1
            if self.has(f"decoder.up_blocks.{i}.upsamplers.0."):
                x = F.interpolate(x, scale_factor=2.0, mode="nearest-exact")
                x = self.conv(x, f"decoder.up_blocks.{i}.upsamplers.0.resample.1")
            i += 1
        x = self.conv(F.silu(self.norm(x, "decoder.norm_out")), "decoder.conv_out")
        return x.clamp(-1, 1)


def test_released_qwen_2d_folder_loads_strictly_and_matches_a_2d_reference(tmp_path: Path) -> None:
    folder, state = qwen_2d_folder(tmp_path)
    ae = load_autoencoder("qwen-image", weights_dir=tmp_path)
    assert isinstance(ae, QwenImageAutoencoder)
    # strict over every key the folder has; the 8 temporal keys are reported, with the reason
    report = ae.key_report
    assert report.ok and report.absent == QWEN_2D_ABSENT
    text = report.format()
    assert "absent by design (8)" in text and "no temporal convolutions" in text and "second frame" in text
    assert set(ae.vae.state_dict()) == set(state)  # nothing else dropped or invented
    # a single frame never reaches a temporal conv; a second frame would, and is refused loudly
    with pytest.raises(RuntimeError, match="single frames only"):
        ae.vae.decoder.up_blocks[0].upsamplers[0].time_conv(torch.zeros(1, 16, 2, 2, 2))

    ref = Reference2D(state)
    mean = torch.tensor(json.loads((folder / "config.json").read_text())["latents_mean"]).view(1, -1, 1, 1)
    std = torch.tensor(json.loads((folder / "config.json").read_text())["latents_std"]).view(1, -1, 1, 1)
    torch.manual_seed(1)
    images = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        z = ae.encode(images, sample=False)  # posterior mean, normalised
        z_ref = (ref.moments(images * 2 - 1)[:, :16] - mean) / std
        assert z.shape == (1, 16, 4, 6)
        torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5 * z_ref.abs().max().item())
        out = ae.decode(z_ref)
        out_ref = (ref.decode(z_ref * std + mean) + 1) / 2
        assert out.shape == (1, 3, 32, 48)
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5 * out_ref.abs().max().item())
        assert out_ref.std() > 1e-3  # not a degenerate (constant) image


def test_qwen_2d_folder_still_refuses_other_key_mismatches(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder, state = qwen_2d_folder(tmp_path)
    weights = folder / "diffusion_pytorch_model.safetensors"
    for edit, expect in (
        (lambda sd: sd.pop("encoder.conv_out.bias"), r"missing keys \(1\):\s+encoder\.conv_out\.bias"),
        (lambda sd: sd.__setitem__("decoder.extra.weight", torch.zeros(1)), r"unexpected keys \(1\):\s+decoder\.extra"),
        # one temporal conv present but not the others: not the 2-D layout, the rest are missing
        (lambda sd: sd.__setitem__("encoder.down_blocks.5.time_conv.weight", torch.zeros(16, 16, 3, 1, 1)),
         r"missing keys \(7\)"),
    ):  # fmt: skip
        sd = dict(state)
        edit(sd)
        save_file(sd, str(weights))
        with pytest.raises(CheckpointMismatchError, match=expect):
            load_autoencoder("qwen-image", weights_dir=tmp_path)


def test_missing_autoencoder_files_are_named(tmp_path: Path, private_caches: Path) -> None:
    # empty caches: the loader falls back to the default cache, where other tests put a tiny VAE
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
