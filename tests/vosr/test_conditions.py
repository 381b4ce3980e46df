"""Conditions: DINOv2 features equal the hub implementation's, condition builders' formulas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vosr.conditions import augment_condition, partial_condition, structural_latent, training_conditions
from vosr.degradations import generator
from vosr.recipes import ConditionConfig
from vosr.semantic import (
    SEMANTIC_ENCODERS,
    build_semantic_encoder,
    load_semantic_encoder,
    preprocess_for_semantic,
    resample_pos_embed_hub,
)


def hub_reference_features(state: dict[str, torch.Tensor], images: torch.Tensor, block: int, size: int,
                           heads: int) -> torch.Tensor:  # fmt: skip
    """An independent forward of the DINOv2 hub ViT, written from facebookresearch/dinov2's
    documented behaviour: resize + normalise, patchify, CLS, position encoding interpolated at
    run time (bicubic, scale_factor (w0 + 0.1) / M, no antialias), pre-norm blocks with
    LayerScale, output of ``block`` before the final norm, CLS dropped."""
    x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std
    w = state["patch_embed.proj.weight"]
    x = F.conv2d(x, w, state["patch_embed.proj.bias"], stride=w.shape[-1])
    B, E, h0, w0 = x.shape
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(B, -1, -1), x], dim=1)
    pos = state["pos_embed"]
    M = int(math.sqrt(pos.shape[1] - 1))
    patch_pos = (
        F.interpolate(
            pos[:, 1:].reshape(1, M, M, E).permute(0, 3, 1, 2),
            scale_factor=((w0 + 0.1) / M, (h0 + 0.1) / M),
            mode="bicubic",
            antialias=False,
        )
        .permute(0, 2, 3, 1)
        .reshape(1, -1, E)
    )
    x = x + torch.cat([pos[:, :1], patch_pos], dim=1)
    for i in range(block + 1):
        p = f"blocks.{i}."

        def ln(t: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return F.layer_norm(t, (E,), state[p + name + ".weight"], state[p + name + ".bias"], eps=1e-6)

        y = ln(x, "norm1")
        qkv = F.linear(y, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, -1, 3, heads, E // heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(E // heads), dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, -1, E)
        y = F.linear(y, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
        x = x + state[p + "ls1.gamma"] * y
        y = F.linear(ln(x, "norm2"), state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])
        y = F.linear(F.gelu(y), state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
        x = x + state[p + "ls2.gamma"] * y
    return x[:, 1:]


def hub_checkpoint(tmp_path: Path, name: str = "dinov2_tiny") -> tuple[Path, dict[str, torch.Tensor]]:
    """A random checkpoint in the hub's key layout at the spec's pretraining grid."""
    torch.manual_seed(0)
    spec = SEMANTIC_ENCODERS[name]
    vit = build_semantic_encoder(spec, 0, spec.pretrain_grid * spec.patch_size).vit
    state = {k: v.clone() for k, v in vit.state_dict().items() if not k.startswith("head")}
    for k in state:
        if k.endswith("gamma"):  # LayerScale trained away from its 1e-5 init
            state[k] = torch.rand_like(state[k])
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    state["mask_token"] = torch.zeros(1, spec.embed_dim)
    path = tmp_path / spec.weights_file
    torch.save(state, path)
    return path, state


def test_features_equal_the_hub_forward(tmp_path: Path) -> None:
    path, state = hub_checkpoint(tmp_path)
    spec = SEMANTIC_ENCODERS["dinov2_tiny"]
    enc = load_semantic_encoder("dinov2_tiny", block=1, image_size=56, weights_path=path)
    images = torch.rand(2, 3, 40, 64)
    with torch.no_grad():
        got = enc(images)
        ref = hub_reference_features(state, images, block=1, size=56, heads=spec.num_heads)
    assert got.shape == (2, 16, 64)  # (56 / 14)^2 tokens, CLS dropped
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # block 0 differs from block 1: the block index is honoured
    enc0 = load_semantic_encoder("dinov2_tiny", block=0, image_size=56, weights_path=path)
    with torch.no_grad():
        assert (enc0(images) - got).abs().max() > 1e-3


def test_hub_resampling_differs_from_timm_default() -> None:
    """Why the resampling is done by hand: timm's default (size=, antialias) is not the hub's."""
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 37 * 37, 32)
    ours = resample_pos_embed_hub(pos, 32)
    assert ours.shape == (1, 1 + 32 * 32, 32)
    timm_default = resample_abs_pos_embed(pos, new_size=[32, 32], num_prefix_tokens=1)
    assert (ours - timm_default).abs().max() > 1e-2
    ref = F.interpolate(pos[:, 1:].reshape(1, 37, 37, 32).permute(0, 3, 1, 2), scale_factor=(32.1 / 37, 32.1 / 37),
                        mode="bicubic", antialias=False).permute(0, 2, 3, 1).reshape(1, -1, 32)  # fmt: skip
    torch.testing.assert_close(ours[:, 1:], ref, rtol=0, atol=0)
    torch.testing.assert_close(ours[:, :1], pos[:, :1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "block", "tokens"), [("dinov2_vitb14", 8, 768), ("dinov2_vitl14", 17, 1024)]
)
def test_real_encoder_shapes_on_meta(name: str, block: int, tokens: int) -> None:
    with torch.device("meta"):
        enc = build_semantic_encoder(name, block, 448)
    assert enc.embed_dim == tokens and enc.vit.pos_embed.shape == (1, 1 + 32 * 32, tokens)
    assert len(enc.vit.blocks) == (12 if name.endswith("b14") else 24)


def test_loads_from_the_torch_hub_cache_and_weights_dir(tmp_path: Path, private_caches: Path) -> None:
    # a hub cache of this test's own: the session cache holds the shared tiny encoder under the
    # same file name, which other tests (in any order, in any worker process) rely on
    from core.paths import torch_hub_checkpoints

    hub = torch_hub_checkpoints()
    hub.mkdir(parents=True)
    path, _ = hub_checkpoint(tmp_path)
    (hub / path.name).write_bytes(path.read_bytes())
    assert load_semantic_encoder("dinov2_tiny", 1, 56).block == 1  # found in the hub cache
    (hub / path.name).unlink()  # an empty hub cache again, for the "not found" checks below
    assert load_semantic_encoder("dinov2_tiny", 1, 56, weights_dir=tmp_path).block == 1
    # a safetensors copy of the hub checkpoint in a weights folder gives the same encoder
    from safetensors.torch import save_file

    st_dir = tmp_path / "st"
    st_dir.mkdir()
    save_file(
        {k: v.contiguous() for k, v in torch.load(path).items()}, str(st_dir / "dinov2_tiny.safetensors")
    )
    images = torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        a = load_semantic_encoder("dinov2_tiny", 1, 56, weights_dir=st_dir)(images)
        b = load_semantic_encoder("dinov2_tiny", 1, 56, weights_path=path)(images)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match=r"dinov2_tiny_pretrain\.pth not found at .*--weights-dir"):
        load_semantic_encoder("dinov2_tiny", 1, 56)
    with pytest.raises(
        FileNotFoundError, match=r"download https://dl\.fbaipublicfiles\.com/dinov2/dinov2_vitb14"
    ):
        load_semantic_encoder("dinov2_vitb14", 8, 448)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.pth: cannot read"):
        load_semantic_encoder("dinov2_tiny", 1, 56, weights_path=bad)


def test_preprocessing_range_and_size() -> None:
    x = preprocess_for_semantic(torch.ones(1, 3, 17, 30), 56)
    assert x.shape == (1, 3, 56, 56)
    torch.testing.assert_close(
        x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


def test_partial_condition_and_structure() -> None:
    torch.manual_seed(0)
    c = torch.randn(3, 4, 8, 8)
    sem = torch.randn(3, 10, 64)
    weak, zero = partial_condition(c, sem, 0.15)
    torch.testing.assert_close(weak, 0.15 * c)
    assert zero.shape == sem.shape and zero.abs().max() == 0
    per_sample, _ = partial_condition(c, sem, torch.tensor([0.05, 0.1, 0.25]))
    torch.testing.assert_close(per_sample[2], 0.25 * c[2])
    assert structural_latent(lambda x, g: x[:, :1] * 2, torch.ones(1, 3, 8, 8)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, H, W\)"):
        structural_latent(lambda x, g: x, torch.ones(3, 8, 8))


def test_noise_augmentation_statistics() -> None:
    """a = sigmoid(N(5, 1)) per sample: the training condition stays mostly c_str (mean a ~ 0.99)."""
    n = 4000
    c = torch.zeros(n, 1, 1, 1) + 1.0
    sem = torch.zeros(n, 1, 1)
    cc = ConditionConfig(dropout_prob=0.0)  # every sample kept: the augmentation alone
    out, _, dropped, _ = training_conditions(c, sem, [generator(0, "aug", i) for i in range(n)],
                                             generator(0, "step"), cc)  # fmt: skip
    assert not dropped.any()
    # with c_str = 1: E[out] = E[a] (noise has zero mean), a in (0, 1)
    assert 0.98 < out.mean().item() < 0.995
    assert out.std().item() < 0.2
    # the per-sample formula: a c + sqrt(1 - a^2) eps' with a and eps' from that sample's generator
    g = generator(0, "aug", 7)
    a = torch.sigmoid(5.0 + torch.randn(1, generator=g))
    want = a * 1.0 + torch.sqrt(1 - a * a) * torch.randn(1, generator=g)
    torch.testing.assert_close(out[7].flatten(), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(augment_condition(c[7:8], generator(0, "aug", 7)), out[7:8])


def test_condition_dropout() -> None:
    """The trainer's dropout: p = 0.1 of the samples get the partial condition (w c_str, 0)."""
    n = 1000
    c, sem = torch.ones(n, 4, 2, 2), torch.ones(n, 5, 8)
    cc = ConditionConfig(guidance="partial_fixed", fixed_strength=0.1, dropout_prob=0.1, noise_aug=False)
    c2, sem2, dropped, w = training_conditions(c, sem, [generator(0, "drop", i) for i in range(n)],
                                               generator(0, "step"), cc)  # fmt: skip
    assert w == 0.1 and 0.07 < dropped.float().mean().item() < 0.13
    torch.testing.assert_close(c2[dropped], 0.1 * c[dropped])
    assert sem2[dropped].abs().max() == 0 and (sem2[~dropped] == 1).all() and (c2[~dropped] == 1).all()
