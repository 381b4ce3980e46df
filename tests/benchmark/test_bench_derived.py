"""Derived scores (issue 15.4): the NTIRE 2025 perceptual score and the metric presets."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from benchmark import derived
from benchmark.metrics import PRESETS, get_metric, resolve_metrics

COMPONENTS = ("lpips", "dists", "clipiqa", "maniqa_koniq", "musiq", "niqe")


def _frame(means: dict[str, dict[str, float]], n: int = 8, spread: float = 0.01) -> pd.DataFrame:
    """Per-image scores whose means are exactly ``means[method][metric]`` (symmetric offsets)."""
    offsets = np.linspace(-spread, spread, n)
    rows = []
    for method, per_metric in means.items():
        for metric, mean in per_metric.items():
            rows += [("D", f"i{k}", method, metric, mean + off) for k, off in enumerate(offsets)]
    return pd.DataFrame(rows, columns=["dataset", "image", "method", "metric", "value"])


def _hand(m: dict[str, float]) -> float:
    # the challenge README's formula, written out independently of benchmark.derived
    return (1 - m["lpips"]) + (1 - m["dists"]) + m["clipiqa"] + m["maniqa_koniq"] + m["musiq"] / 100 + max(
        0.0, (10 - m["niqe"]) / 10
    )


A = {"lpips": 0.2968, "dists": 0.2165, "clipiqa": 0.6963, "maniqa_koniq": 0.5895, "musiq": 64.6537, "niqe": 6.4902}
B = {"lpips": 0.35, "dists": 0.25, "clipiqa": 0.55, "maniqa_koniq": 0.45, "musiq": 55.0, "niqe": 11.5}  # NIQE > 10


def test_ntire2025_score_equals_the_hand_computation_on_component_means():
    table = derived.derived_table(_frame({"A": A, "B": B}), n_boot=200).set_index("method")
    # A: 0.7032 + 0.7835 + 0.6963 + 0.5895 + 0.646537 + 0.35098 = 3.770017
    assert table.loc["A", "score"] == pytest.approx(3.770017, abs=1e-9) == pytest.approx(_hand(A), abs=1e-12)
    assert table.loc["B", "score"] == pytest.approx(_hand(B), abs=1e-12)  # the NIQE term is clamped at 0
    assert table.loc["B", "score"] == pytest.approx(0.65 + 0.75 + 0.55 + 0.45 + 0.55 + 0.0, abs=1e-12)
    assert table.loc["A", "rank"] == 1 and table.loc["B", "rank"] == 2
    for c in COMPONENTS:  # the components the score was computed from are recorded beside it
        assert table.loc["A", c] == pytest.approx(A[c], abs=1e-12)
        assert json.loads(table.loc["A", "components"])[c] == pytest.approx(A[c], abs=1e-6)
    assert table.loc["A", "ci_low"] <= table.loc["A", "score"] <= table.loc["A", "ci_high"]
    assert table.loc["A", "n"] == 8 and bool(table.loc["A", "complete"])


def test_a_method_missing_a_component_image_gets_no_score():
    frame = _frame({"A": A, "B": B})
    frame = frame[~((frame["method"] == "B") & (frame["metric"] == "musiq") & (frame["image"] == "i0"))]
    table = derived.derived_table(frame, n_boot=50).set_index("method")
    assert np.isnan(table.loc["B", "score"]) and pd.isna(table.loc["B", "rank"]) and not table.loc["B", "complete"]
    only_five = _frame({"A": {k: v for k, v in A.items() if k != "niqe"}})
    assert derived.derived_table(only_five).empty  # a missing component: no row at all


def test_the_presets_and_their_sources():
    assert PRESETS["ntire2025"].metrics == COMPONENTS == derived.get_derived("ntire2025").components
    specs = resolve_metrics("ntire2025")
    assert [s.name for s in specs] == list(COMPONENTS)
    # the challenge script uses pyiqa's default `maniqa`, the KonIQ model, not the papers' PIPAL one
    assert get_metric("maniqa_koniq").pyiqa_name == "maniqa" and get_metric("maniqa").pyiqa_name == "maniqa-pipal"
    assert PRESETS["osediff"].metrics == ("psnr", "ssim", "lpips", "dists", "clipiqa", "niqe", "musiq", "maniqa")
    assert PRESETS["vosr-appendix"].metrics == ("lpips", "musiq", "niqe", "maniqa", "afine_nr", "topiq_nr")
    assert all(p.source for p in PRESETS.values())
    from core.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'ntire2025'"):
        derived.get_derived("ntire2024")


def test_bench_report_derived_on_the_command_line(tmp_path, capsys):
    from benchmark.store import ResultsStore, ScoreRecord
    from screensr.cli import main

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultsStore(url)
    store.add_scores([ScoreRecord(r.dataset, r.image, r.method, r.metric, float(r.value), "s", "h", "c")
                      for r in _frame({"A": A}).itertuples(index=False)])  # fmt: skip
    store.close()
    assert main(["bench", "report", "--store", url, "--derived", "ntire2025", "--format", "csv"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out.loc[0, "score"] == pytest.approx(_hand(A), abs=1e-9) and out.loc[0, "maniqa_koniq"] == pytest.approx(A["maniqa_koniq"])
