"""Checkpoint formats: the released run folder, self-describing safetensors, readable failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vosr import create_model
from vosr.checkpoints import (
    config_from_official_args,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_run_folder,
)
from vosr.config import ConfigError
from vosr.statedict import CheckpointMismatchError

# The official args.json keys that define the network (an argparse dump; training keys ignored).
OFFICIAL_TINY_ARGS = {
    "resolution": 128,
    "patch_size": 2,
    "mlp_ratio": 4,
    "use_qknorm": True,
    "use_swiglu": True,
    "use_rope": True,
    "use_rmsnorm": True,
    "wo_shift": False,
    "dim": 128,
    "depth": 2,
    "num_heads": 2,
    "ae_type": "sd",
    "dinov2_size": 448,
    "enc_type": "dinov2b",
    "enc_dim": 64,
    "layer_dinov2b_list": [8],
    "encdim_ratio": 3,
    "lr": 5e-5,
    "global_batch_size": 256,
}


def write_released_folder(root: Path, tag: str, args: dict, golden_weights) -> Path:
    run = root / f"VOSR_tiny_{tag}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "args.json").write_text(json.dumps(args))
    save_file(golden_weights(tag), str(run / "checkpoints" / "ema_model.safetensors"))
    return run


@pytest.mark.parametrize("tag", ["multi_step", "one_step"])
def test_released_folder_loads_and_reproduces_golden(tmp_path: Path, tag: str, golden, golden_weights) -> None:
    args = dict(OFFICIAL_TINY_ARGS, **({"distill_type": "onestep"} if tag == "one_step" else {}))
    run = write_released_folder(tmp_path, tag, args, golden_weights)
    for spec in (run, run / "checkpoints" / "ema_model.safetensors"):
        model, info = load_checkpoint(spec)
        assert info.layout == "released" and info.args_path == run / "args.json"
        assert model.one_step == (tag == "one_step") and not model.training
        cfg = info.config
        assert (cfg.hidden_size, cfg.depth, cfg.latent_channels, cfg.input_size) == (128, 2, 4, 16)
        assert (cfg.semantic_encoder, cfg.semantic_block, cfg.autoencoder) == ("dinov2_vitb14", 8, "sd21")
        g = golden
        pre = f"{tag}.other_grid."
        with torch.no_grad():
            v = model(g[pre + "x"], g[pre + "t"], g[pre + "semantic"], g.get(pre + "r"))
        torch.testing.assert_close(v, g[pre + "velocity"], rtol=0, atol=1e-5)


def test_official_args_of_the_released_sizes() -> None:
    args_14 = {
        "resolution": 512, "dim": 1536, "depth": 36, "num_heads": 24, "ae_type": "qwen",
        "enc_type": "dinov2l", "enc_dim": 1024, "layer_dinov2b_list": [17], "encdim_ratio": 3,
        "distill_type": "onestep", "use_swiglu": True,
    }  # fmt: skip
    cfg = config_from_official_args(args_14)
    assert cfg.name == "vosr-1.4b" and cfg.one_step and cfg.latent_channels == 16
    assert (cfg.autoencoder, cfg.semantic_encoder, cfg.semantic_block, cfg.input_size) == (
        "qwen-image", "dinov2_vitl14", 17, 64,
    )  # fmt: skip
    from vosr.config import model_config

    assert cfg == model_config("vosr-1.4b", one_step=True)
    with pytest.raises(ConfigError, match="use_swiglu=False"):
        config_from_official_args({**args_14, "use_swiglu": False})
    with pytest.raises(ConfigError, match="enc_type 'clip'"):
        config_from_official_args({**args_14, "enc_type": "clip"})
    with pytest.raises(ConfigError, match="dim/depth/num_heads"):
        config_from_official_args({"lr": 1e-4})


def test_self_describing_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("vosr-tiny", one_step=True)
    path = save_checkpoint(model, tmp_path / "student.safetensors", metadata={"step": 123})
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind
    loaded, info = load_checkpoint(path)
    assert info.layout == "self-describing" and info.config == model.config
    assert info.metadata["step"] == "123"
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)
    # idempotent: saving again over the file gives the same tensors and metadata
    save_checkpoint(model, path, metadata={"step": 123})
    again, info2 = load_checkpoint(path)
    assert info2.metadata == info.metadata
    torch.testing.assert_close(again.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_run_folder_written_by_our_trainer(tmp_path: Path) -> None:
    model = create_model("vosr-tiny")
    weights = save_run_folder(model, tmp_path / "run", args={"lr": 1e-4, "steps": 10})
    assert weights == tmp_path / "run" / "checkpoints" / "ema_model.safetensors"
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    assert args["model"]["name"] == "vosr-tiny" and args["lr"] == 1e-4
    # the args.json alone rebuilds it, too (weights without metadata, as a plain trainer might save)
    save_file(model.state_dict(), str(weights))
    loaded, info = load_checkpoint(tmp_path / "run")
    assert info.layout == "released" and info.config == model.config
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_readable_failures(tmp_path: Path, golden_weights) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"checkpoints/ema_model\.safetensors"):
        load_checkpoint(tmp_path / "empty")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupt.safetensors: not a readable safetensors"):
        load_checkpoint(corrupt)
    bare = tmp_path / "bare" / "w.safetensors"
    bare.parent.mkdir()
    save_file(golden_weights("multi_step"), str(bare))
    with pytest.raises(FileNotFoundError, match="no 'vosr_model_config' metadata and no args.json"):
        read_checkpoint(bare)
    # weights of another size under a tiny config: every mismatch listed, with the file named
    wrong = tmp_path / "wrong.safetensors"
    state = golden_weights("multi_step")
    state["final_layer.linear.weight"] = torch.zeros(32, 128)
    save_checkpoint(state, wrong, config=create_model("vosr-tiny").config)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)wrong\.safetensors.*final_layer\.linear\.weight"):
        load_checkpoint(wrong)
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        save_checkpoint(create_model("vosr-tiny"), tmp_path / "x.pt")
