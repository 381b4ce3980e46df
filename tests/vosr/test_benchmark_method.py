"""``screensr bench run`` scores a tiny random-weight VOSR checkpoint end to end.

The benchmark's VOSR adapter (``benchmark.methods.VOSRMethod``) imports ``vosr`` lazily and calls
``VOSRUpscaler``; this test runs the real command on a small generic dataset and checks the stored
scores and that the scored SR images are exactly the pipeline's outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import ConfigError
from screensr.cli import main


@pytest.fixture(scope="module")
def weights(tiny_weights) -> dict:
    return tiny_weights


def make_dataset(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    (root / "hr").mkdir(parents=True)
    (root / "lr").mkdir()
    for i in range(n):
        yy, xx = np.mgrid[0:64, 0:64]
        hr = (np.stack([yy, xx, yy + xx], -1) * (2 + i) % 256).astype(np.uint8)
        hr = np.clip(hr + rng.integers(0, 20, hr.shape), 0, 255).astype(np.uint8)
        Image.fromarray(hr).save(root / "hr" / f"img{i}.png")
        Image.fromarray(hr).resize((16, 16), Image.BICUBIC).save(root / "lr" / f"img{i}.png")
    return root


def test_bench_run_scores_a_vosr_checkpoint(weights: dict, tmp_path: Path) -> None:
    from benchmark.methods import create_method
    from benchmark.store import ResultsStore

    ds = make_dataset(tmp_path / "ds")
    store = f"sqlite:///{tmp_path / 'results.db'}"
    spec = f"tiny=vosr:{weights['checkpoint_os']}@weights_dir={weights['root']}"
    args = ["bench", "run", "--dataset", str(ds), "--method", spec, "--metrics", "psnr,ssim",
            "--store", store, "--no-gt", "--no-progress", "--scale", "4"]  # fmt: skip
    assert main(args) == 0
    frame = ResultsStore(store).scores_frame(method="tiny")
    assert len(frame) == 3 * 2  # 3 images x 2 metrics
    assert np.isfinite(frame["value"]).all()
    psnr = frame[frame["metric"] == "psnr"]["value"]
    assert (psnr > 5).all() and (psnr < 60).all()

    # the scored outputs are the pipeline's outputs for these LR images
    from benchmark.images import read_image
    from vosr.pipeline import VOSRUpscaler

    method = create_method(spec)
    up = VOSRUpscaler(weights["checkpoint_os"], weights_dir=weights["root"])
    lr = read_image(ds / "lr" / "img1.png")
    scored = method.output("img1", lr, 4).array  # from the cache the run filled
    # each image's noise is keyed by its LR content hash (the cache key), not by order or name
    np.testing.assert_array_equal(scored, up(lr.array, 4, name=lr.sha256))
    assert not np.array_equal(scored, up(lr.array, 4, name="another image"))

    # a rerun recomputes nothing (the store already holds every score)
    assert main(args) == 0
    assert len(ResultsStore(store).scores_frame(method="tiny")) == 6


def test_release_tag_without_weights_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_dataset(tmp_path / "ds", n=1)
    code = main(["bench", "run", "--dataset", str(ds), "--methods", "vosr-0.5b-os", "--metrics", "psnr",
                 "--store", f"sqlite:///{tmp_path / 'r.db'}", "--no-gt", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "VOSR_0.5B_os" in err and "ema_model.safetensors" in err


def copy_weights(weights: dict, dest: Path) -> Path:
    """A private copy of the tiny weights (files can then be replaced without touching others)."""
    import shutil

    shutil.copytree(weights["root"], dest)
    return dest


def test_method_hash_is_the_resolved_settings_plus_weight_hashes(weights: dict, tmp_path: Path) -> None:
    from benchmark.methods import create_method

    root = copy_weights(weights, tmp_path / "w")
    ms = root / "vosr-tiny-ms"
    spec = f"vosr:{ms}@weights_dir={root}"
    base = create_method(spec)
    # the default steps, guidance and preset spelled out resolve to the same settings
    for same in ("@steps=25", "@steps=25@guidance=0.5", "@preset=screensr", "@guidance=0.5@weak_strength=0.15",
                 "@quantize=release@color_fix=adain@tile_layout=release", "@seed=0"):  # fmt: skip
        assert create_method(spec + same).method_hash == base.method_hash, same
    for other in (
        "@steps=24",
        "@guidance=1",
        "@preset=realsr",
        "@quantize=round",
        "@color_fix=wavelet",
        "@tile=4",
    ):
        assert create_method(spec + other).method_hash != base.method_hash, other
    assert (
        create_method(spec + "@guidance=1").method_hash == create_method(spec + "@guidance=1.0").method_hash
    )
    cfg = base.config()
    assert cfg["sampling"]["steps"] == 25 and cfg["sampling"]["quantize"] == "release"
    assert set(cfg["files"]) == {"backbone", "autoencoder_config", "autoencoder", "semantic_encoder"}
    assert str(root) not in json.dumps(cfg)  # identified by content, not by where the files lie
    # changing a weight file's bytes (same name, same size) changes the identity
    enc = root / "dinov2_tiny_pretrain.pth"
    state = torch.load(enc, weights_only=True)
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"] + 0.01
    torch.save(state, enc)
    assert create_method(spec).method_hash != base.method_hash
    # a misspelt option fails when the spec is parsed, before any weight file is read
    with pytest.raises(ConfigError, match=r"unknown option 'stpes' \(did you mean 'steps'\?\)"):
        create_method(spec + "@stpes=4")
    with pytest.raises(ConfigError, match=r"steps: expected an integer, got str 'many'"):
        create_method(spec + "@steps=many")


def test_misspelt_vosr_option_is_a_one_line_cli_error(tmp_path: Path, capsys) -> None:
    ds = make_dataset(tmp_path / "ds", n=1)
    code = main(["bench", "run", "--dataset", str(ds), "--methods", "vosr-0.5b-ms@stpes=8", "--metrics", "psnr",
                 "--store", f"sqlite:///{tmp_path / 'r.db'}", "--no-gt", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith("error:")] and len(lines) == 1, err
    assert "unknown option 'stpes' (did you mean 'steps'?)" in lines[0]


# Method hashes of the tiny checkpoints computed by the code before the typed options (issue 14.7),
# with every weight file's sha256 replaced by the sha256 of its file name (the random weights are
# regenerated per run): the identity of a setting must not change with the refactoring, or cached
# outputs and stored scores would be orphaned.
IDENTITY_BEFORE_TYPED_OPTIONS = {
    "checkpoint_ms": "aca9b83b4a3441d3",
    "checkpoint_ms@steps=8": "de9e230c08a99497",
    "checkpoint_ms@guidance=0.3@tile=8@tile_overlap=2": "4fd1dfdb4b8f5762",
    "checkpoint_ms@preset=realsr": "cae1ce9df720faf0",
    "checkpoint_ms@color_fix=wavelet@quantize=round@seed=3@sample_posterior=false@vae_tile=64": "bb6c3ce4a53beed7",
    "checkpoint_ms@dtype=bf16@tile=8@tile_batch=2@tile_layout=rect": "eef7895c1e33814d",
    "checkpoint_ms@steps=25@guidance=0.5@weak_strength=0.15": "aca9b83b4a3441d3",
    "checkpoint_os": "65d74367a6d4bc46",
    "checkpoint_os@steps=8": "99aa5dae80c00e75",
    "checkpoint_os@color_fix=wavelet@quantize=round@seed=3@sample_posterior=false@vae_tile=64": "6b211636c507b3e7",
    "checkpoint_os@dtype=bf16@tile=8@tile_batch=2@tile_layout=rect": "d35ee2f720693bfa",
}


def test_method_identity_is_unchanged_by_the_typed_options(weights: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import vosr.pipeline
    from benchmark.methods import create_method

    monkeypatch.setattr(vosr.pipeline, "file_sha256", lambda p, **kw: hashlib.sha256(Path(p).name.encode()).hexdigest())
    for case, want in IDENTITY_BEFORE_TYPED_OPTIONS.items():
        ck, _, opts = case.partition("@")
        spec = f"vosr:{weights[ck]}{'@' + opts if opts else ''}@weights_dir={weights['root']}"
        assert create_method(spec).method_hash == want, case


def test_release_tag_is_identified_by_its_weights(weights: dict, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from benchmark.methods import MethodError, create_method

    root = copy_weights(weights, tmp_path / "w")
    shutil.copytree(root / "vosr-tiny-ms", root / "VOSR_0.5B_ms")  # the tiny run under the release tag
    tag = create_method(f"vosr-0.5b-ms@weights_dir={root}")
    by_path = create_method(f"vosr:{root / 'VOSR_0.5B_ms'}@weights_dir={root}")
    assert tag.method_hash == by_path.method_hash  # the same weights, the same outputs
    # new weights under the same tag: another identity, so no stale cached output is reused
    ema = root / "VOSR_0.5B_ms" / "checkpoints" / "ema_model.safetensors"
    from safetensors import safe_open

    with safe_open(str(ema), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(ema))
    state["final_layer.linear.bias"] = state["final_layer.linear.bias"] + 0.1
    save_file(state, str(ema), metadata=metadata)
    replaced = create_method(f"vosr-0.5b-ms@weights_dir={root}")
    assert replaced.method_hash != tag.method_hash
    assert replaced.config()["files"]["backbone"] != tag.config()["files"]["backbone"]
    with pytest.raises(MethodError, match="noise=release .*screensr vosr infer --noise release"):
        create_method(f"vosr-0.5b-ms@weights_dir={root}@noise=release")
