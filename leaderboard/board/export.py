"""Static export: the leaderboard as a self-contained site (HTML + CSV/JSON + PNG), no server.

``screensr board export --out DIR`` writes::

    DIR/index.html                  tables (sortable, direction arrows, CIs), plots, crops
    DIR/methods.html                every method's description, configuration, provenance, links
    DIR/export.json                 the options used and the store it came from
    DIR/data/summary.csv|json       mean, CI and n per dataset x method x metric
    DIR/data/gt_quality.csv         no-reference scores of the HR images (VOSR Table 2)
    DIR/data/<dataset>/leaderboard.csv|json, scores.csv (per image)
    DIR/plots/<dataset>-pd.png      perception-distortion plane with the Pareto front
    DIR/plots/<dataset>-dist.png    per-image distributions
    DIR/crops/<dataset>/<image>/*.png  the same crop of LR, HR and the top methods (lossless)

Nothing refers to the network (no CDN scripts or fonts): the folder can be copied to project
pages or a paper supplement as it is. Every file is written atomically, and only when its bytes
change, so a rerun on an unchanged store rewrites nothing.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark import plots, report
from benchmark.report import run_problems
from core.atomic import write_if_changed
from core.errors import ConfigError, UserError
from leaderboard import crops
from leaderboard.board import data, display, loading, versions
from leaderboard.board.submissions import is_web_link


class EmptyStoreError(UserError, ValueError):
    """The results store holds no scores: there is nothing to publish."""


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What the static export contains (``screensr board export --config FILE.yaml`` loads it
    with :func:`core.config.load_config`: unknown keys are refused with the closest name).

    Attributes:
        crops: comparison crops per dataset (images with the largest spread between the top
            methods on the first fidelity metric); 0 for none.
        crop_size: crop side in HR pixels.
        zoom: nearest-neighbour enlargement of the crops (integer).
        methods_per_crop: top-ranked methods shown in each crop.
        x_metric / y_metric: axes of the perception-distortion plot (default: PSNR or the first
            full-reference metric; MUSIQ/MANIQA or the first no-reference one).
        dist_metric: metric of the distribution plot (default: the y metric).
    """

    crops: int = 2
    crop_size: int = 96
    zoom: int = 3
    methods_per_crop: int = 4
    x_metric: str | None = None
    y_metric: str | None = None
    dist_metric: str | None = None

    def __post_init__(self) -> None:
        for name in ("crops", "methods_per_crop"):
            if getattr(self, name) < 0:
                raise ConfigError(f"export option {name} must be >= 0, got {getattr(self, name)}")
        if self.crop_size < 8:
            raise ConfigError(f"export option crop_size must be >= 8 pixels, got {self.crop_size}")
        if self.zoom < 1 or self.crop_size * self.zoom > 2048:
            raise ConfigError(
                f"export option zoom={self.zoom} with crop_size={self.crop_size} gives "
                f"{self.crop_size * self.zoom} px crops; keep zoom >= 1 and crop_size x zoom <= 2048"
            )


# --------------------------------------------------------------------------- files


def slug(name: str) -> str:
    """A file-name-safe form of a dataset, image or method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "x"


def _safe_url(url: str) -> str:
    """The store URL without any password (it ends up in a published page)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # an unparsable URL cannot have come from an opened store: hide it all
        return "(store)"


# --------------------------------------------------------------------------- HTML

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;color:#1f2328}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}
th{background:#f6f8fa;cursor:pointer;position:sticky;top:0}
td.t,th.t{text-align:left}
tr.best td{font-weight:600}
td.partial{color:#9a6700;font-style:italic}
.crops{display:flex;flex-wrap:wrap;gap:.75rem;align-items:flex-start}
.crops figure{margin:0}
.crops img{image-rendering:pixelated;image-rendering:crisp-edges;display:block}
figcaption{font-size:.8rem;text-align:center}
nav a{margin-right:1rem}
.scroll{overflow-x:auto}
"""

# Sorts a table by the clicked header: numbers by value (data-v), text alphabetically. Inline, so
# the page works from a file:// URL and offline.
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var r = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return asc ? r : -r;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    table.querySelectorAll('th').forEach(function(h){ h.dataset.asc = ''; });
    th.dataset.asc = asc ? '1' : '0';
  });
});
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}\n<script>{_SORT_JS}</script></body></html>\n"
    )


def _fmt(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return "–"
    return f"{float(value):.{decimals}f}"


def leaderboard_html(table: pd.DataFrame, columns: Sequence[display.MetricColumn]) -> str:
    """One dataset's wide table as a sortable HTML table.

    Each metric is one cell, ``mean [CI low, CI high]`` (sorting uses the mean); a method that
    lacks images of the dataset shows ``(n/N images)`` in the cell and its status, and has no rank.
    """
    level = f"{round(report.CONFIDENCE * 100)}%"
    head = ["<th class='t' title='aggregated rank, 1 = best; only methods with every image are ranked'>Rank</th>",
            f"<th class='t' title='the rank&#39;s {level} bootstrap interval over images; overlapping intervals share a "
            f"rank'>Rank ({level} interval)</th>",
            "<th class='t'>Method</th>",
            "<th class='t' title='the version whose scores this dataset shows'>Version</th>",
            "<th class='t'>Family</th>",
            "<th title='mean of per-metric ranks'>Mean rank ↓</th>",
            "<th class='t' title='complete: a score for every image of the dataset'>Status</th>"]  # fmt: skip
    for c in columns:
        direction = {True: "higher is better", False: "lower is better", None: "direction unknown"}[c.higher_is_better]
        unit = f" ({c.unit})" if c.unit else ""
        level = f"{round(report.CONFIDENCE * 100)}%"
        head.append(f"<th title='{html.escape(c.label + unit)}: {direction}; mean [{level} CI]'>{html.escape(c.header)}</th>")
    head.append("<th>Images</th>")
    texts = {c.name: data.cell_text(table, c) for c in columns}
    images = data.images_text(table) if len(table) else []
    rows = []
    for i, r in table.iterrows():
        rank = "" if pd.isna(r["rank"]) else int(r["rank"])
        status = str(r["status"])
        note = str(r.get("note", "") or "")
        status_cell = html.escape(status) if not note else f"<span title='{html.escape(note)}'>{html.escape(status)}</span>"
        shared = str(r.get("shared_rank", "") or "")
        cells = [
            f"<td class='t' data-v='{rank}'>{rank}</td>",
            f"<td class='t' data-v='{html.escape(shared)}'>{html.escape(shared)}</td>",
            f"<td class='t' data-v='{html.escape(str(r['method']))}'><a href='methods.html#{slug(str(r['method']))}'>"
            f"{html.escape(str(r['method']))}</a></td>",
            f"<td class='t' data-v='{html.escape(str(r['version']))}'>{html.escape(str(r['version']) or '–')}</td>",
            f"<td class='t' data-v='{html.escape(str(r['family']))}'>{html.escape(str(r['family']))}</td>",
            f"<td data-v='{'' if pd.isna(r['mean_rank']) else r['mean_rank']}'>{_fmt(r['mean_rank'], 2)}</td>",
            f"<td class='t' data-v='{html.escape(status)}'>{status_cell}</td>",
        ]
        for c in columns:
            mean = r[c.name]
            text = texts[c.name][i] or "–"
            partial = " class='partial'" if pd.notna(mean) and r[f"{c.name} n"] < r[f"{c.name} N"] else ""
            cells.append(f"<td{partial} data-v='{'' if pd.isna(mean) else mean}'>{html.escape(text)}</td>")
        cells.append(f"<td data-v='{r['n']}'>{html.escape(images[i])}</td>")
        best = i == 0 and pd.notna(r["rank"])
        rows.append(f"<tr{' class=best' if best else ''}>{''.join(cells)}</tr>")
    return (
        f"<div class='scroll'><table class='sortable'><thead><tr>{''.join(head)}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def runs_html(problems: pd.DataFrame) -> str:
    """The runs that did not complete (failed, aborted, partial, running, interrupted)."""
    if problems.empty:
        return ""
    rows = "".join(
        f"<tr><td class='t'>{html.escape(str(r.method))}</td><td class='t'>{html.escape(str(r.status))}</td>"
        f"<td class='t'>{html.escape(str(r.error))}</td></tr>"
        for r in problems.itertuples(index=False)
    )
    return (
        "<h3>Runs that did not complete</h3><table><thead><tr><th class='t'>Method</th><th class='t'>Status</th>"
        f"<th class='t'>Error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _simple_table(frame: pd.DataFrame, headers: dict[str, str], decimals: int = 4) -> str:
    head = "".join(f"<th class='t'>{html.escape(headers.get(c, c))}</th>" for c in frame.columns)
    body = []
    for _, r in frame.iterrows():
        cells = []
        for c in frame.columns:
            v = r[c]
            text = _fmt(v, decimals) if isinstance(v, (float, np.floating)) else html.escape(str(v))
            cells.append(f"<td data-v='{html.escape(str(v))}'>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------- plots and crops


def _plot_axes(columns: Sequence[display.MetricColumn], options: ExportOptions) -> tuple[str | None, str | None]:
    names = [c.name for c in columns if c.higher_is_better is not None]
    fidelity = [c.name for c in columns if c.fidelity and c.higher_is_better is not None]
    perceptual = [c.name for c in columns if not c.fidelity and c.higher_is_better is not None]
    x = options.x_metric or next((m for m in ("psnr", "lpips") if m in fidelity), fidelity[0] if fidelity else None)
    y = options.y_metric or next((m for m in ("musiq", "maniqa") if m in perceptual), perceptual[0] if perceptual else None)
    for chosen in (options.x_metric, options.y_metric):
        if chosen is not None and chosen not in names:
            raise ConfigError(f"export: metric {chosen!r} has no scores with a known direction; available: {names}")
    return x, y


def _render_plot(fn, path: Path, **kwargs: Any) -> bool:
    """Render with a benchmark plot function into a temporary file; keep it only if it changed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = fn(path=Path(tmp) / path.name, **kwargs)
        return write_if_changed(path, Path(out).read_bytes())


def pick_crop_images(scores: pd.DataFrame, dataset: str, methods: Sequence[str], metric: str, k: int) -> list[str]:
    """The ``k`` images where ``methods`` disagree most on ``metric`` (largest spread), ties by name."""
    part = scores[(scores["dataset"] == dataset) & (scores["metric"] == metric) & scores["method"].isin(methods)]
    if part.empty or k <= 0:
        return []
    spread = part.groupby("image")["value"].agg(lambda v: float(np.max(v) - np.min(v)) if len(v) > 1 else 0.0)
    order = sorted(spread.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in order[:k]]


# --------------------------------------------------------------------------- the site


def export_site(
    url: str | None, out: str | os.PathLike[str], options: ExportOptions | None = None, *, progress: bool = False
) -> Path:
    """Write the static site for the store at ``url`` into ``out``; returns ``out/index.html``.

    Raises:
        EmptyStoreError: the store holds no scores (nothing to publish).
        ConfigError: an option names a metric without scores.
    """
    from tqdm import tqdm


    options = options or ExportOptions()
    out = Path(out)
    board = loading.load_board(url)
    if board.scores.empty:
        raise EmptyStoreError(f"the results store {_safe_url(board.url)} holds no scores; run `screensr bench run` first")
    out.mkdir(parents=True, exist_ok=True)
    write_if_changed(out / "export.json", json.dumps(
        {"store": _safe_url(board.url), "options": dataclasses.asdict(options)}, indent=1, sort_keys=True
    ))  # fmt: skip
    write_if_changed(out / "data" / "summary.csv", board.summary.to_csv(index=False))
    write_if_changed(out / "data" / "summary.json", board.summary.to_json(orient="records", indent=1))
    gt = data.gt_quality_table(board.summary)
    if not gt.empty:
        write_if_changed(out / "data" / "gt_quality.csv", gt.to_csv(index=False))

    sections = []
    nav = []
    for dataset in tqdm(board.dataset_names(), desc="export", unit="dataset", disable=not progress):
        d = slug(dataset)
        columns = board.columns(dataset)
        table = board.table(dataset, columns)
        if table.empty:
            continue
        write_if_changed(out / "data" / d / "leaderboard.csv", table.to_csv(index=False))
        write_if_changed(out / "data" / d / "leaderboard.json", data.table_json(table, dataset, columns))
        per_image = board.scores[board.scores["dataset"] == dataset][["image", "method", "metric", "value"]]
        write_if_changed(out / "data" / d / "scores.csv", per_image.to_csv(index=False))
        nav.append(f"<a href='#{d}'>{html.escape(dataset)}</a>")
        parts = [
            f"<h2 id='{d}'>{html.escape(dataset)}</h2>",
            f"<p>{len(table)} methods; mean over the dataset's images [{round(report.CONFIDENCE * 100)}% percentile "
            f"bootstrap interval, {report.N_BOOT} resamples]; rank = mean of per-metric ranks, each in its metric's "
            "direction, among the methods with a score for every image (others show n/N and are not ranked). "
            "Click a header to sort. Download: "
            f"<a href='data/{d}/leaderboard.csv'>CSV</a> · <a href='data/{d}/leaderboard.json'>JSON</a> · "
            f"<a href='data/{d}/scores.csv'>per-image scores</a></p>",
            leaderboard_html(table, columns),
            runs_html(report_problems(board, dataset)),
        ]
        x, y = _plot_axes(columns, options)
        frame = board.scores[board.scores["dataset"] == dataset]
        if x and y and x != y:
            _render_plot(plots.perception_distortion, out / "plots" / f"{d}-pd.png", frame=frame, x=x, y=y, dataset=dataset)
            parts.append(
                f"<h3>Perception-distortion plane</h3><img src='plots/{d}-pd.png' alt='{html.escape(x)} vs "
                f"{html.escape(y)} on {html.escape(dataset)}, Pareto front in red'>"
            )
        dist = options.dist_metric or y or x
        if dist:
            _render_plot(plots.distributions, out / "plots" / f"{d}-dist.png", frame=frame, metric=dist, dataset=dataset)
            parts.append(
                f"<h3>Per-image distribution of {html.escape(dist)}</h3><img src='plots/{d}-dist.png' "
                f"alt='per-image {html.escape(dist)} on {html.escape(dataset)}'>"
            )
        parts.append(_extras_section(board, dataset, columns, out))
        parts.append(_crops_section(board, dataset, table, columns, options, out))
        sections.append("\n".join(parts))

    gt_html = ""
    if not gt.empty:
        gt_cols = display.metric_columns([c for c in gt.columns if c not in ("dataset", "n")], board.known)
        headers = {"dataset": "Dataset", "n": "Images", **{c.name: c.header for c in gt_cols}}
        gt_html = f"<h2 id='gt-quality'>Ground-truth quality</h2>{_simple_table(gt, headers)}"
        nav.append("<a href='#gt-quality'>GT quality</a>")
    body = (
        "<h1>ScreenSR leaderboard</h1>"
        f"<p>Exported from <code>{html.escape(_safe_url(board.url))}</code>. Every score was computed by the "
        "ScreenSR harness from the methods' outputs. <a href='methods.html'>Methods</a> · "
        "<a href='data/summary.csv'>all means (CSV)</a> · <a href='data/summary.json'>JSON</a></p>"
        f"<nav>{''.join(nav)}</nav>\n" + "\n".join(sections) + gt_html
    )
    index = out / "index.html"
    write_if_changed(index, _page("ScreenSR leaderboard", body))
    write_if_changed(out / "methods.html", _page("ScreenSR methods", _methods_body(board)))
    return index


def report_problems(board: loading.Board, dataset: str) -> pd.DataFrame:
    """The latest runs on ``dataset`` that did not complete (``benchmark.report.run_problems``)."""

    problems = run_problems(board.runs)
    return problems[(problems["dataset"] == dataset) & (problems["method"] != data.GT_METHOD)]


def _extras_section(board: loading.Board, dataset: str, columns: Sequence[display.MetricColumn], out: Path) -> str:
    """Rank intervals per metric, the NTIRE 2025 score and the reported-vs-measured rows of one
    dataset, as HTML and as CSV files beside the leaderboard's."""
    d = slug(dataset)
    ranked = [c for c in columns if c.higher_is_better is not None]
    boxes = board.rank_intervals(dataset, [c.name for c in ranked]) if ranked else pd.DataFrame()
    derived = board.derived(dataset, "ntire2025")
    compared = board.reported_vs_measured(dataset)
    # (file stem, title, what it is, the frame written as CSV, its readable table)
    sections = [
        ("rank_intervals", "Rank intervals",
         f"{round(report.CONFIDENCE * 100)}% bootstrap intervals of each rank (images resampled, paired across "
         f"methods, {report.N_BOOT} resamples); overlapping intervals share a rank.",
         boxes, lambda: data.rank_interval_table(boxes, ranked)),
        ("ntire2025", "NTIRE 2025 perceptual score",
         "(1 - LPIPS) + (1 - DISTS) + CLIPIQA + MANIQA + MUSIQ/100 + max(0, (10 - NIQE)/10) on the dataset means "
         "(MANIQA: pyiqa's KonIQ model, as the challenge script; arXiv:2504.14582).",
         derived, lambda: data.derived_display(derived)),
        ("reported_vs_measured", "Reported vs measured",
         "Published numbers beside the measured ones (never mixed into the means above); ✓ where the suite "
         "reproduced the value within the metric's tolerance.",
         compared, lambda: data.reported_display(compared)),
    ]  # fmt: skip
    parts = []
    for stem, title, text, frame, readable in sections:
        if len(frame):
            write_if_changed(out / "data" / d / f"{stem}.csv", frame.to_csv(index=False))
            parts.append(f"<h3>{title}</h3><p>{html.escape(text)} <a href='data/{d}/{stem}.csv'>CSV</a></p>"
                         + _simple_table(readable(), {}))  # fmt: skip
    return "\n".join(parts)


def _crops_section(
    board: loading.Board,
    dataset: str,
    table: pd.DataFrame,
    columns: Sequence[display.MetricColumn],
    options: ExportOptions,
    out: Path,
) -> str:
    if options.crops <= 0 or options.methods_per_crop <= 0:
        return ""
    try:
        images = crops.dataset_images(board.datasets, dataset)
    except (KeyError, FileNotFoundError, ValueError) as exc:
        return f"<p><em>No comparison crops: {html.escape(str(exc))}</em></p>"
    top = [m for m in table["method"]][: options.methods_per_crop]
    # the outputs of the version whose scores the dataset shows (not merely the newest version)
    shown = versions.shown_versions(board.score_versions(), board.methods, dataset)
    metric = next((c.name for c in columns if c.fidelity), columns[0].name if columns else None)
    if metric is None:
        return ""
    chosen = [i for i in pick_crop_images(board.scores, dataset, top, metric, options.crops * 4) if i in images]
    blocks = ["<h3>Comparison crops</h3><p>The same region of each image, enlarged by pixel replication "
              "(nearest neighbour), lossless PNG.</p>"]  # fmt: skip
    for image in chosen[: options.crops]:
        files = images[image]
        outputs = {m: crops.method_output(shown[m].outputs if m in shown else "", files) for m in top}
        box, panels = crops.comparison_crops(files, outputs, (0.5, 0.5), options.crop_size, options.zoom)
        figs = []
        for name, panel in panels.items():
            label = {"LR": "LR input", "HR": "HR reference"}.get(name, shown[name].label if name in shown else name)
            if isinstance(panel, str):
                figs.append(f"<figure><figcaption>{html.escape(label)}: {html.escape(panel)}</figcaption></figure>")
                continue
            rel = f"crops/{slug(dataset)}/{slug(image)}/{slug(name)}.png"
            write_if_changed(out / rel, crops.png_bytes(panel))
            figs.append(
                f"<figure><img src='{rel}' width='{panel.shape[1]}' height='{panel.shape[0]}' "
                f"alt='{html.escape(label)}'><figcaption>{html.escape(label)}</figcaption></figure>"
            )
        blocks.append(
            f"<h4>{html.escape(image)} <small>(HR region x {box[0]}-{box[2]}, y {box[1]}-{box[3]}, zoom "
            f"{options.zoom})</small></h4><div class='crops'>{''.join(figs)}</div>"
        )
    return "\n".join(blocks)


def _methods_body(board: loading.Board) -> str:
    parts = ["<h1>Methods</h1><p><a href='index.html'>Back to the leaderboard</a></p>"]
    for name in data.filter_methods(board.methods):
        info = loading.method_info(board, name)
        links = "".join(
            f"<li><a href='{html.escape(u)}'>{html.escape(u)}</a></li>" if is_web_link(u) else f"<li>{html.escape(u)}</li>"
            for u in info.links
        )  # only http(s) becomes a link: a stored javascript: URL must not run in a published page
        parts.append(
            f"<h2 id='{slug(name)}'>{html.escape(name)}</h2>"
            f"<p><b>Family</b>: {html.escape(info.family)} · <b>Current version</b>: {html.escape(info.version or '–')}</p>"
            f"<p>{html.escape(info.description)}</p>"
            + (f"<ul>{links}</ul>" if links else "")
            + (_simple_table(info.coverage, {}) if not info.coverage.empty else "")
            + "<h3>Versions</h3>"
            + _simple_table(versions.version_history(board.all_versions(), board.score_versions(), name), {})
            + f"<details><summary>Configuration (hash {html.escape(info.config_hash)})</summary><pre>"
            f"{html.escape(json.dumps(info.config, indent=1, sort_keys=True))}</pre></details>"
        )
    return "\n".join(parts)
