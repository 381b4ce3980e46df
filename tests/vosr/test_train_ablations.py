"""The paper's ablation switches: guidance design (Table 4) and semantic encoder (Table 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vosr.conditions import training_conditions
from vosr.degradations import generator
from vosr.recipes import ConditionConfig, load_recipe
from vosr.train import Trainer


def _batch(n: int = 512):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, 2, 2, generator=g), torch.randn(n, 3, 8, generator=g)


def _run(cc: ConditionConfig, step: int = 0, n: int = 512):
    c, s = _batch(n)
    gens = [generator(0, "train", i) for i in range(n)]
    return c, s, training_conditions(c, s, gens, generator(0, "weak-strength", step), cc)


def test_partial_random_strength_is_per_step_in_range_and_dropout_rate_is_10_percent() -> None:
    cc = ConditionConfig(noise_aug=False)
    ws = []
    for step in range(40):
        c, s, (c2, s2, drop, w) = _run(cc, step, n=64)
        assert 0.05 <= w <= 0.25
        ws.append(w)
        # dropped samples: w * c_str and zero semantic tokens; the others untouched
        assert torch.allclose(c2[drop], w * c[drop]) and torch.equal(s2[drop], torch.zeros_like(s[drop]))
        assert torch.equal(c2[~drop], c[~drop]) and torch.equal(s2[~drop], s[~drop])
    assert max(ws) - min(ws) > 0.1  # it varies between steps
    _, _, (_, _, drop, _) = _run(cc, 0, n=4000)
    assert abs(drop.float().mean().item() - 0.1) < 0.015


def test_guidance_designs() -> None:
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="full", noise_aug=False))
    assert not drop.any() and torch.equal(c2, c) and torch.equal(s2, s)
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="cfg", noise_aug=False))
    assert w == 0 and drop.any() and torch.all(c2[drop] == 0) and torch.all(s2[drop] == 0)
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="partial_fixed", fixed_strength=0.1, noise_aug=False))
    assert w == 0.1 and torch.allclose(c2[drop], 0.1 * c[drop])


def test_noise_augmentation_is_applied_per_sample() -> None:
    c, s, (c2, _, drop, _) = _run(ConditionConfig(guidance="full"))
    diff = (c2 - c).flatten(1).norm(dim=1) / c.flatten(1).norm(dim=1)
    assert diff.min() > 0 and diff.median() < 0.2  # a = sigmoid(N(5, 1)): mostly close to clean


@pytest.fixture
def images(tiny_cache_weights, hq_images: Path) -> Path:
    return hq_images


@pytest.mark.parametrize("guidance", ["full", "cfg", "partial_fixed"])
def test_each_guidance_design_trains(images: Path, tmp_path: Path, guidance: str) -> None:
    cfg = load_recipe("tiny", {"conditions.guidance": guidance})
    res = Trainer(cfg, [images], tmp_path / guidance, max_steps=2, progress=False).fit()
    assert res.step == 2


def test_no_semantic_encoder_trains_and_is_recorded(images: Path, tmp_path: Path) -> None:
    from vosr.checkpoints import read_checkpoint

    cfg = load_recipe("tiny", {"semantic_encoder": "none"})
    trainer = Trainer(cfg, [images], tmp_path / "none", max_steps=2, progress=False)
    trainer.fit()
    assert trainer.encoders.encoder is None
    _, info = read_checkpoint(tmp_path / "none")
    assert info.config.semantic_encoder == "none"


@pytest.mark.parametrize("encoder", ["clip", "siglip2", "dinov3"])
def test_ablation_encoder_checkpoints_run_through_inference(images: Path, tmp_path: Path, encoder: str, synthetic_image) -> None:
    """Trained with --set semantic_encoder=X (tiny random weights at the registry's cache path), the
    run folder loads in VOSRUpscaler and `screensr vosr infer`, which resolve X in the same registry."""
    import cv2
    import numpy as np

    from screensr.cli import main
    from vosr.config import SamplingConfig
    from vosr.pipeline import VOSRUpscaler
    from vosr.semantic import SEMANTIC_ENCODERS, semantic_weights_path, write_random_semantic_weights

    name = f"{encoder}_tiny"
    spec = SEMANTIC_ENCODERS[name]
    cache = semantic_weights_path(spec)
    assert cache.parent.name == "checkpoints" and cache.name == f"{name}.safetensors"
    write_random_semantic_weights(name, cache, seed=1)
    run = tmp_path / encoder
    trainer = Trainer(load_recipe("tiny", {"semantic_encoder": encoder}), [images], run, max_steps=2, progress=False)
    assert trainer.fit().step == 2
    cfg = trainer.model_cfg
    assert (cfg.semantic_encoder, cfg.semantic_dim, cfg.semantic_size, cfg.semantic_block) == (name, 64, 64, 1)
    assert not (run / "components").exists()  # found at the cache path, nothing created
    up = VOSRUpscaler(run, SamplingConfig(steps=2))
    assert up.info.config.semantic_encoder == name and type(up.encoder.vit) is type(trainer.encoders.encoder.vit)
    lr = synthetic_image(5, 16, 16)
    assert up(lr, upscale=4, name="a.png").shape == (64, 64, 3)
    # the same tokens as the trainer's encoder
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(up.encoder(x), trainer.encoders.encoder(x), rtol=0, atol=0)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), lr[:, :, ::-1])
    assert main(["vosr", "infer", "-c", str(run), "-i", str(src), "-o", str(out), "--steps", "2", "--device", "cpu"]) == 0
    assert np.asarray(cv2.imread(str(out / "x.png"))).shape == (64, 64, 3)


def test_ablation_switch_maps_to_the_registry() -> None:
    from vosr.recipes import semantic_overrides

    assert semantic_overrides("dinov2", "vosr-0.5b") == {}
    assert semantic_overrides("none", "vosr-0.5b") == {"semantic_encoder": "none"}
    assert semantic_overrides("clip", "vosr-0.5b") == {
        "semantic_encoder": "clip_vitb16", "semantic_dim": 768, "semantic_size": 224, "semantic_block": 8}
    assert semantic_overrides("dinov3", "vosr-1.4b")["semantic_size"] == 448
    assert semantic_overrides("siglip2", "vosr-tiny")["semantic_encoder"] == "siglip2_tiny"
    with pytest.raises(ValueError, match="did you mean 'clip'"):
        semantic_overrides("clipp", "vosr-0.5b")


def _fake_hf_cache(repo: str, filename: str, write) -> Path:
    """A file in the Hugging Face hub cache layout (refs/main -> snapshots/<rev>/filename)."""
    import os

    root = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    path = root / "snapshots" / rev / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    return path


def test_real_ablation_encoders_are_read_from_timms_hugging_face_cache(tmp_path: Path) -> None:
    from vosr.semantic import SEMANTIC_ENCODERS, load_semantic_encoder, semantic_weights_path

    spec = SEMANTIC_ENCODERS["siglip2_vitb16"]
    assert spec.hf_repo == "timm/vit_base_patch16_siglip_224.v2_webli"
    with pytest.raises(FileNotFoundError, match="hf download timm/vit_base_patch16_siglip_224.v2_webli"):
        load_semantic_encoder("siglip2_vitb16", 8, 224)
    path = _fake_hf_cache(spec.hf_repo, "model.safetensors", lambda p: p.write_bytes(b"x"))
    assert semantic_weights_path(spec) == path
    # --weights-dir holding <name>.safetensors comes first
    (tmp_path / "siglip2_vitb16.safetensors").write_bytes(b"x")
    assert semantic_weights_path(spec, tmp_path) == tmp_path / "siglip2_vitb16.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip_vitb16", "siglip2_vitb16", "dinov3_vitb16"])
def test_full_size_ablation_encoders_load_strictly_from_the_cache(name: str) -> None:
    """ViT-B/16 random weights in timm's format (the CLIP file with its 512-d projection head) at the
    Hugging Face cache path load strictly and give the tokens of the timm model itself."""
    import timm
    from safetensors.torch import save_file

    from vosr.semantic import SEMANTIC_ENCODERS, load_semantic_encoder

    spec = SEMANTIC_ENCODERS[name]
    torch.manual_seed(0)
    ref = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, img_size=spec.default_size).eval()
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if name == "clip_vitb16":
        state["head.weight"] = torch.randn(512, 768)  # the released checkpoint's projection
    _fake_hf_cache(spec.hf_repo, "model.safetensors", lambda p: save_file(state, str(p)))
    enc = load_semantic_encoder(name, spec.default_block, spec.default_size)
    x = torch.rand(1, 3, 96, 80)
    with torch.no_grad():
        tokens = enc(x)
        cfg = ref.pretrained_cfg
        y = torch.nn.functional.interpolate(x, size=(spec.default_size,) * 2, mode="bicubic").clamp(0, 1)
        y = (y - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        want = ref.forward_intermediates(y, indices=[spec.default_block], norm=False, output_fmt="NLC",
                                         intermediates_only=True)[0]
    torch.testing.assert_close(tokens, want)
    assert tokens.shape[-1] == 768
