"""The per-image distribution plot says what its axes and markers mean (issue 13.7)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import plots
from benchmark.store import GT


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"dataset": d, "image": f"{i:03d}", "method": m, "metric": "niqe", "value": float(v)}
        for d in ("realsr", "drealsr")
        for m, mu in ((GT, 5.0), ("bicubic", 8.0), ("realesrgan", 6.0))
        for i, v in enumerate(rng.normal(mu, 0.5, 12))
    ]
    return pd.DataFrame(rows)


def test_niqe_distribution_has_a_y_label_and_a_legend_for_the_mean_marker(tmp_path):
    import matplotlib.pyplot as plt

    fig = plots.distribution_figure(_scores(), metric="niqe")
    try:
        assert len(fig.axes) == 2  # one panel per dataset
        for ax in fig.axes:
            assert ax.get_ylabel() == "niqe (lower is better)"
            legend = ax.get_legend()
            assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["mean", "median"]
            # the "mean" entry shows the marker drawn at each method's mean (3 methods: 3 such markers)
            marker = legend.legend_handles[0].get_marker()
            assert marker not in ("", "None", None)
            assert sum(ln.get_marker() == marker and ln.get_linestyle() == "None" for ln in ax.lines) == 3
    finally:
        plt.close(fig)
    assert plots.distributions(_scores(), tmp_path / "d.png", metric="niqe").stat().st_size > 1000
