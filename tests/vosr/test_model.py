"""Model sizes: exact parameter counts, released key layout, init, factory errors."""

from __future__ import annotations

import pytest
import torch

from vosr import create_model
from vosr.config import ConfigError, model_config
from vosr.statedict import CheckpointMismatchError, check_state_dict, load_state_dict_strict

# docs/vosr-reference.md, "1. Backbone (a LightningDiT variant)" (derived from the layer shapes of the release)
REFERENCE_PARAMS = {
    ("vosr-0.5b", False): 485_623_616,
    ("vosr-0.5b", True): 486_936_384,
    ("vosr-1.4b", False): 1_393_943_616,
    ("vosr-1.4b", True): 1_396_699_200,
}


def meta_model(name: str, one_step: bool = False) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, one_step=one_step)


@pytest.mark.parametrize(("name", "one_step"), list(REFERENCE_PARAMS))
def test_parameter_counts_equal_reference(name: str, one_step: bool) -> None:
    model = meta_model(name, one_step)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS[(name, one_step)]


def reference_layout(
    D: int, depth: int, C: int, E: int, h: int, one_step: bool
) -> dict[str, tuple[int, ...]]:
    """The released key layout, written out from docs/vosr-reference.md, "8. Checkpoint keys (per block i)"."""
    keys: dict[str, tuple[int, ...]] = {
        "x_embedder.proj.weight": (D, 2 * C, 2, 2),
        "x_embedder.proj.bias": (D,),
        "t_embedder.mlp.0.weight": (D, 256),
        "t_embedder.mlp.0.bias": (D,),
        "t_embedder.mlp.2.weight": (D, D),
        "t_embedder.mlp.2.bias": (D,),
        "t_block.1.weight": (6 * D, D),
        "t_block.1.bias": (6 * D,),
        "feat_rope.freqs_cos": (1024, 64),
        "feat_rope.freqs_sin": (1024, 64),
        "final_layer.norm_final.weight": (D,),
        "final_layer.linear.weight": (2 * 2 * C, D),
        "final_layer.linear.bias": (2 * 2 * C,),
        "final_layer.adaLN_modulation.1.weight": (2 * D, D),
        "final_layer.adaLN_modulation.1.bias": (2 * D,),
        "layer_norm.weight": (E,),
        "layer_norm.bias": (E,),
        "mlp_ca.fc1.weight": (3 * D, E),
        "mlp_ca.fc1.bias": (3 * D,),
        "mlp_ca.fc2.weight": (D, 3 * D),
        "mlp_ca.fc2.bias": (D,),
    }
    if one_step:
        keys.update(
            {k.replace("t_embedder", "r_embedder"): v for k, v in keys.items() if k.startswith("t_embedder")}
        )
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update(
            {
                b + "norm1.weight": (D,),
                b + "norm2.weight": (D,),
                b + "attn.qkv.weight": (3 * D, D),
                b + "attn.qkv.bias": (3 * D,),
                b + "attn.q_norm.weight": (64,),
                b + "attn.k_norm.weight": (64,),
                b + "attn.proj.weight": (D, D),
                b + "attn.proj.bias": (D,),
                b + "mlp.w12.weight": (2 * h, D),
                b + "mlp.w12.bias": (2 * h,),
                b + "mlp.w3.weight": (D, h),
                b + "mlp.w3.bias": (D,),
                b + "scale_shift_table": (6, D),
                b + "cross_attn.q_norm.weight": (64,),
                b + "cross_attn.k_norm.weight": (64,),
            }
        )
        for lin in ("q_linear", "k_linear", "v_linear", "proj"):
            keys[b + f"cross_attn.{lin}.weight"] = (D, D)
            keys[b + f"cross_attn.{lin}.bias"] = (D,)
    return keys


LAYOUTS = {"vosr-0.5b": (1024, 28, 4, 768, 2730), "vosr-1.4b": (1536, 36, 16, 1024, 4096)}


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("one_step", [False, True])
def test_state_dict_layout_equals_release(name: str, one_step: bool) -> None:
    model = meta_model(name, one_step)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == reference_layout(*LAYOUTS[name], one_step=one_step)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_released_layout_loads_strictly_and_wrong_ones_fail(name: str) -> None:
    model = meta_model(name)
    layout = reference_layout(*LAYOUTS[name], one_step=False)
    with torch.device("meta"):
        state = {k: torch.empty(s) for k, s in layout.items()}
    assert check_state_dict(model, state).ok
    load_state_dict_strict(model, state, source="released", assign=True)

    # a one-step checkpoint into a multi-step model: unexpected r_embedder keys, with a hint
    with torch.device("meta"):
        one_step_state = {
            **state,
            **{k: torch.empty(s) for k, s in reference_layout(*LAYOUTS[name], True).items()},
        }
    with pytest.raises(
        CheckpointMismatchError, match=r"(?s)unexpected keys \(4\).*r_embedder.*one_step=True"
    ):
        load_state_dict_strict(meta_model(name), one_step_state, source="x.safetensors")

    # a mis-shaped and a missing tensor are both named
    bad = dict(state)
    bad.pop("blocks.3.mlp.w3.bias")
    with torch.device("meta"):
        bad["final_layer.linear.weight"] = torch.empty(8, LAYOUTS[name][0])
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_strict(meta_model(name), bad, source="bad.safetensors")
    msg = str(err.value)
    assert "bad.safetensors" in msg and "missing keys (1)" in msg and "blocks.3.mlp.w3.bias" in msg
    assert "final_layer.linear.weight: checkpoint [8," in msg
    assert err.value.report.mis_shaped[0][0] == "final_layer.linear.weight"


def test_wrapper_prefixes_are_stripped() -> None:
    model = create_model("vosr-tiny")
    state = {"module._orig_mod." + k: v for k, v in model.state_dict().items()}
    other = create_model("vosr-tiny")
    load_state_dict_strict(other, state)
    torch.testing.assert_close(other.state_dict(), model.state_dict())


def test_init_follows_reference() -> None:
    torch.manual_seed(0)
    model = create_model("vosr-tiny", one_step=True)
    D = model.config.hidden_size
    assert model.final_layer.linear.weight.abs().max() == 0
    assert model.final_layer.adaLN_modulation[1].weight.abs().max() == 0
    assert model.blocks[0].attn.qkv.bias.abs().max() == 0
    assert abs(model.t_embedder.mlp[0].weight.std().item() - 0.02) < 0.003
    assert abs(model.r_embedder.mlp[2].weight.std().item() - 0.02) < 0.003
    # xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / (D + 3 * D)) ** 0.5
    w = model.blocks[1].attn.qkv.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    table = model.blocks[0].scale_shift_table
    assert abs(table.std().item() - D**-0.5) < 0.3 * D**-0.5
    # an untrained network predicts zero velocity (zero-initialised head)
    with torch.no_grad():
        v = model(torch.randn(1, 8, 16, 16), torch.tensor([0.5]), torch.randn(1, 3, 64))
    assert v.abs().max() == 0


def test_unknown_size_and_override_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'vosr-0.5b'"):
        create_model("vosr-0.5")
    with pytest.raises(ConfigError, match="unknown key 'hiden_size'.*did you mean 'hidden_size'"):
        model_config("vosr-tiny", hiden_size=64)
    with pytest.raises(ConfigError, match="not divisible"):
        model_config("vosr-tiny", num_heads=3)


@pytest.mark.slow
@pytest.mark.parametrize("one_step", [False, True])
def test_full_size_05b_runs_on_cpu(one_step: bool) -> None:
    """The real 0.5B network (random init, ~2 GB fp32) runs a small latent end to end."""
    torch.manual_seed(0)
    model = create_model("vosr-0.5b", one_step=one_step).eval()
    with torch.no_grad():
        for p in model.final_layer.parameters():
            p.normal_(0, 0.02)
        v = model(
            torch.randn(2, 8, 16, 20),
            torch.tensor([1.0, 0.3]),
            torch.randn(2, 1024, 768),
            torch.tensor([0.0, 0.3]),
        )
    assert v.shape == (2, 4, 16, 20) and torch.isfinite(v).all() and v.abs().max() > 0
