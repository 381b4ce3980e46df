"""Checkpoints written by the trainer load in the inference pipeline, its CLI and the benchmark."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vosr.config import SamplingConfig
from vosr.recipes import load_recipe
from vosr.train import Trainer


@pytest.fixture(scope="module")
def runs(trained_tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's trained tiny run and a 2-step student distilled from it."""
    root = tmp_path_factory.mktemp("runs")
    Trainer(load_recipe("tiny", {"mode": "distill"}), [trained_tiny.images], root / "os", teacher=trained_tiny.run,
            max_steps=2, progress=False).fit()  # fmt: skip
    return {"ms": trained_tiny.run, "os": root / "os", "images": trained_tiny.images}


@pytest.mark.parametrize("kind", ["ms", "os"])
def test_pipeline_runs_trained_checkpoints(runs: dict[str, Path], kind: str, synthetic_image) -> None:
    from vosr.pipeline import VOSRUpscaler

    up = VOSRUpscaler(runs[kind], SamplingConfig(steps=3 if kind == "ms" else None))
    assert up.info.config.one_step == (kind == "os")
    lr = synthetic_image(7, 16, 24)
    sr = up(lr, upscale=4, name="a.png")
    assert sr.shape == (64, 96, 3) and sr.dtype == np.uint8
    # a snapshot folder of one step loads too
    snap = sorted((runs[kind] / "snapshots").iterdir())[-1]
    assert VOSRUpscaler(snap, SamplingConfig(steps=1))(lr, upscale=4, name="a.png").shape == (64, 96, 3)


def test_infer_cli_runs_a_training_run(runs: dict[str, Path], tmp_path: Path, synthetic_image) -> None:
    from screensr.cli import main

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "x.png"), synthetic_image(3, 16, 16)[:, :, ::-1])
    out = tmp_path / "out"
    assert main(["vosr", "infer", "-c", str(runs["ms"]), "-i", str(src), "-o", str(out), "--steps", "2",
                 "--device", "cpu"]) == 0
    assert cv2.imread(str(out / "x.png")).shape == (64, 64, 3)


def test_benchmark_eval_callback_scores_a_snapshot(runs: dict[str, Path], tmp_path: Path, synthetic_image,
                                                   request: pytest.FixtureRequest) -> None:  # fmt: skip
    from benchmark.training_eval import default_metrics, make_eval_callback

    data = tmp_path / "pairs"
    for sub in ("hr", "lr"):
        (data / sub).mkdir(parents=True)
    for i in range(2):
        hr = synthetic_image(40 + i, 128, 128)
        cv2.imwrite(str(data / "hr" / f"p{i}.png"), hr[:, :, ::-1])
        cv2.imwrite(str(data / "lr" / f"p{i}.png"), cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    assert default_metrics()[:2] == ["psnr", "niqe"]  # LPIPS / MUSIQ only when their weights exist
    cb = make_eval_callback(data, metrics=["psnr", "niqe"], device="cpu", vosr_options={"steps": 2})
    snap = sorted((runs["ms"] / "snapshots").iterdir())[-1]
    scores = cb(4, snap)
    assert set(scores) == {"psnr", "niqe"} and all(np.isfinite(v) for v in scores.values())
    assert 5 < scores["psnr"] < 60
    # empty caches of its own from here on: other modules put random LPIPS weights in the session's
    request.getfixturevalue("private_caches")
    with pytest.raises(FileNotFoundError, match="lpips"):
        make_eval_callback(data, metrics=["lpips"], device="cpu")


def test_trainer_calls_the_eval_callback_and_logs_eval_csv(runs: dict[str, Path], tmp_path: Path) -> None:
    seen = []

    def callback(step: int, ckpt: Path) -> dict[str, float]:
        from vosr.checkpoints import load_checkpoint

        load_checkpoint(ckpt)  # a loadable released-layout folder
        seen.append(step)
        return {"psnr": 20.0 + step}

    cfg = load_recipe("tiny", {"eval_every": 2})
    Trainer(cfg, [runs["images"]], tmp_path / "r", max_steps=4, eval_callback=callback, progress=False).fit()
    assert seen == [2, 4]
    assert (tmp_path / "r" / "eval.csv").read_text().splitlines() == ["step,metric,value", "2,psnr,22.0", "4,psnr,24.0"]


def test_cli_eval_wiring_through_the_entry_point_group(runs: dict[str, Path], tmp_path: Path, monkeypatch,
                                                      synthetic_image) -> None:
    """--eval-every finds the provider via importlib.metadata entry points (faked here when the
    package metadata predates the entry point) and writes eval.csv; without data it fails loudly."""
    import importlib.metadata as md

    from screensr.cli import main
    from vosr import train_cli

    data = tmp_path / "pairs"
    for sub in ("hr", "lr"):
        (data / sub).mkdir(parents=True)
    hr = synthetic_image(50, 128, 128)
    cv2.imwrite(str(data / "hr" / "p.png"), hr[:, :, ::-1])
    cv2.imwrite(str(data / "lr" / "p.png"), cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    if not list(md.entry_points(group=train_cli.EVAL_GROUP)):
        ep = md.EntryPoint("benchmark", "benchmark.training_eval:make_eval_callback", train_cli.EVAL_GROUP)
        real = md.entry_points

        def fake(**kw):
            return [ep] if kw.get("group") == train_cli.EVAL_GROUP else real(**kw)

        monkeypatch.setattr(md, "entry_points", fake)
    run = tmp_path / "r"
    assert main(["vosr", "train", "--recipe", "tiny", "--data", str(runs["images"]), "--out", str(run),
                 "--max-steps", "2", "--eval-every", "2", "--eval-data", str(data), "--eval-metrics", "psnr",
                 "--no-progress"]) == 0
    lines = (run / "eval.csv").read_text().splitlines()
    assert lines[0] == "step,metric,value" and lines[1].startswith("2,psnr,")
    assert main(["vosr", "train", "--recipe", "tiny", "--data", str(runs["images"]), "--out", str(tmp_path / "q"),
                 "--eval-every", "2"]) == 2  # needs --eval-data
