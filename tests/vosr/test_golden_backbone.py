"""The backbone reproduces the official VOSR network's outputs (tests/data/golden/README.md)."""

from __future__ import annotations

import pytest
import torch

from vosr import create_model


@pytest.mark.parametrize("tag", ["multi_step", "one_step"])
@pytest.mark.parametrize("grid", ["trained_grid", "other_grid"])
def test_backbone_matches_official_outputs(tag: str, grid: str, golden, golden_model) -> None:
    g = golden
    model = golden_model(tag)
    pre = f"{tag}.{grid}."
    with torch.no_grad():
        v = model(g[pre + "x"], g[pre + "t"], g[pre + "semantic"], g.get(pre + "r"))
    assert v.shape == g[pre + "velocity"].shape
    # README: "max abs difference well under 1e-5" in float32 on CPU
    torch.testing.assert_close(v, g[pre + "velocity"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("tag", ["multi_step", "one_step"])
def test_rope_buffers_equal_the_released_tables(tag: str, golden_weights) -> None:
    model = create_model("vosr-tiny", one_step=tag == "one_step")
    ref = golden_weights(tag)
    torch.testing.assert_close(model.feat_rope.freqs_cos, ref["feat_rope.freqs_cos"], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.feat_rope.freqs_sin, ref["feat_rope.freqs_sin"], rtol=0, atol=1e-6)


def test_one_step_student_equals_teacher_at_r_equal_t(golden, golden_model, golden_weights) -> None:
    """c = t_emb + (t - r) r_emb: at r = t the r-embedder contributes nothing."""
    g = golden
    student = golden_model("one_step")
    teacher = create_model("vosr-tiny")
    teacher.load_state_dict({k: v for k, v in golden_weights("one_step").items() if not k.startswith("r_")})
    x, t, sem = (
        g["one_step.trained_grid.x"],
        g["one_step.trained_grid.t"],
        g["one_step.trained_grid.semantic"],
    )
    with torch.no_grad():
        torch.testing.assert_close(student(x, t, sem, r=t), teacher.eval()(x, t, sem), rtol=0, atol=1e-6)
        torch.testing.assert_close(student(x, t, sem), student(x, t, sem, r=t), rtol=0, atol=0)


def test_batch_equals_singles(golden, golden_model) -> None:
    g = golden
    model = golden_model("multi_step")
    x, t, sem = (g[f"multi_step.trained_grid.{k}"] for k in ("x", "t", "semantic"))
    with torch.no_grad():
        batched = model(x, t, sem)
        singles = torch.cat([model(x[i : i + 1], t[i : i + 1], sem[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hw", [(16, 12), (13, 16), (7, 9)])
def test_non_square_and_odd_latents(hw: tuple[int, int], golden_model) -> None:
    """Odd sizes are padded to the patch grid and cropped back; non-square grids work."""
    model = golden_model("multi_step")
    torch.manual_seed(0)
    x = torch.randn(2, 8, *hw)
    with torch.no_grad():
        v = model(x, torch.tensor([0.3, 0.8]), torch.randn(2, 20, 64))
    assert v.shape == (2, 4, *hw)
    assert torch.isfinite(v).all()


def test_semantic_token_count_is_free(golden_model) -> None:
    """Cross-attention has no spatial alignment: any N semantic tokens are accepted."""
    model = golden_model("multi_step")
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        for n in (1, 20, 33):
            assert model(x, torch.tensor([0.5]), torch.randn(1, n, 64)).shape == (1, 4, 16, 16)


def test_gradient_checkpointing_gives_the_same_gradients(golden_weights) -> None:
    torch.manual_seed(0)
    weights = golden_weights("multi_step")
    x, t, sem = torch.randn(2, 8, 16, 16), torch.rand(2), torch.randn(2, 20, 64)
    grads = []
    for ckpt in (False, True):
        model = create_model("vosr-tiny", grad_checkpointing=ckpt)
        model.load_state_dict(weights)
        model.train()
        model(x, t, sem).square().mean().backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("tag", ["multi_step", "one_step"])
def test_backbone_on_cuda_matches_golden(tag: str, golden, golden_model) -> None:
    """CPU == GPU: fp32 without TF32 to 1e-4, bf16 to a few percent of the output scale."""
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker needs a CUDA device (run `pytest -m gpu` on a GPU machine)")
    g = golden
    pre = f"{tag}.trained_grid."
    ref = g[pre + "velocity"]
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        model = golden_model(tag).cuda()
        args = [g[pre + k].cuda() if (pre + k) in g else None for k in ("x", "t", "semantic", "r")]
        with torch.no_grad():
            torch.testing.assert_close(model(*args).cpu(), ref, rtol=0, atol=1e-4)
            half = model.to(torch.bfloat16)
            v = half(args[0].bfloat16(), args[1], args[2].bfloat16(), args[3]).float().cpu()
        assert (v - ref).abs().mean() < 0.05 * ref.abs().mean()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
