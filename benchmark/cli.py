"""``screensr bench ...``: command-line verbs of the ``benchmark`` package.

Only the standard library is imported at module level; handlers import what they need.
"""

from __future__ import annotations

import argparse
import sys


class _Fmt(argparse.RawDescriptionHelpFormatter):
    pass


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=None,
        help="SQLAlchemy URL or SQLite path of the results store "
        "(default: $SCREENSR_STORE, else sqlite:///results.db)",
    )


def _add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", action="append", required=True, metavar="PATH_OR_NAME",
                   help="dataset folder, name under $SCREENSR_HOME/datasets (e.g. DRealSR_crops), or "
                   "hf:REPO[@split]; repeatable; `screensr bench datasets` lists the known sets and layouts")  # fmt: skip
    p.add_argument("--scale", type=int, default=None, help="SR factor (default: inferred from the pairs)")
    p.add_argument("--layout", default=None,
                   help="force a layout: generic, capture, crops, realsr, drealsr, screensr, nr")  # fmt: skip
    p.add_argument("--name", action="append", default=None, help="dataset name in the store (one per --dataset)")


def _add_reliability(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                   help="stop (default): the first unreadable image, missing output or failing metric ends the "
                   "run (recorded as failed with the error); skip: skip that pair for that method, list and "
                   "count it, store nothing for it")  # fmt: skip
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when anything requested was skipped (metrics without weights, "
                   "pairs skipped with --on-error skip); the last line says what")  # fmt: skip


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add this group's verbs to ``parser`` (the ``screensr bench`` parser)."""
    parser.set_defaults(_parser=parser)
    parser.epilog = (
        "examples:\n"
        "  screensr bench run --dataset data/demo --methods bicubic,lanczos --metrics psnr,ssim,niqe\n"
        "  screensr bench report --format markdown\n"
        "  screensr bench metrics\n"
    )
    sub = parser.add_subparsers(title="verbs", metavar="VERB")

    p = sub.add_parser(
        "run",
        help="score methods on datasets (per-image scores into the store; resumable)",
        description="Score SR methods on paired datasets with pyiqa metrics. Every per-image score "
        "goes to the results store with its provenance; a rerun computes only what is missing.",
        formatter_class=_Fmt,
        epilog="examples:\n"
        "  screensr bench run --dataset data/demo --methods bicubic,lanczos --metrics psnr,ssim,niqe\n"
        "  screensr bench run --dataset DRealSR_crops --methods folder:outputs/osediff --metrics osediff \\\n"
        "      --store sqlite:///results.db --workers 2\n"
        "  screensr bench run --dataset data/demo --method 'mine=cmd:python sr.py {input} {output}'\n"
        "  screensr bench run --dataset data/demo --methods folder:outs --on-error skip --strict\n"
        "  torchrun --nproc_per_node 2 $(which screensr) bench run --dataset data/demo --methods bicubic\n"
        "metric sets: osediff (the OSEDiff/StableSR evaluation), vosr, gt-quality, classical;\n"
        "options per metric: psnr@crop_border=4",
    )
    _add_dataset(p)
    p.add_argument("--methods", action="append", default=None,
                   help="comma list: bicubic, lanczos, realesrgan, vosr-0.5b-os, folder:PATH, py:MOD:FN, NAME=SPEC")  # fmt: skip
    p.add_argument("--method", action="append", default=None,
                   help="one method spec (use for specs containing commas, e.g. cmd:...); repeatable")  # fmt: skip
    p.add_argument("--metrics", default="classical", help="comma list of metrics or protocol names (default: classical)")
    _add_store(p)
    p.add_argument("--workers", type=int, default=1,
                   help="processes to shard images across (torch.distributed, gloo; forked on CPU, "
                   "SCREENSR_START_METHOD=spawn to change); needs a file or server --store")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] for metric models and VOSR")
    p.add_argument("--no-gt", action="store_true", help="skip the no-reference scores of the ground truth")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv", "json"],
                   help="format of the summary printed at the end")  # fmt: skip
    _add_reliability(p)
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "gt-quality",
        help="no-reference scores of the ground truth (the VOSR paper's Table 2)",
        description="Score each dataset's HR images with no-reference metrics (stored as method GT).",
        formatter_class=_Fmt,
        epilog="example:\n  screensr bench gt-quality --dataset data/RealSR_crops --dataset data/DRealSR_crops\n",
    )
    _add_dataset(p)
    p.add_argument("--metrics", default="gt-quality", help="no-reference metrics (default: gt-quality)")
    _add_store(p)
    p.add_argument("--workers", type=int, default=1, help="processes to shard images across")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] for metric models")
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv", "json"])
    p.add_argument("--no-progress", action="store_true")
    _add_reliability(p)
    p.set_defaults(func=_gt_quality)

    p = sub.add_parser(
        "report",
        help="tables (mean, bootstrap CI), paired comparisons, ranks, GT quality, plots",
        description="Aggregate the stored per-image scores: one row per dataset x method x metric.",
        formatter_class=_Fmt,
        epilog="examples:\n"
        "  screensr bench report --store sqlite:///results.db --format markdown\n"
        "  screensr bench report --compare osediff bicubic --test wilcoxon\n"
        "  screensr bench report --ranks --format latex\n"
        "  screensr bench report --pairwise lpips --dataset DRealSR\n"
        "  screensr bench report --derived ntire2025\n"
        "  screensr bench report --reported\n"
        "  screensr bench report --plot-pd psnr lpips --plot-dist niqe --plot-dir plots/\n",
    )
    _add_store(p)
    p.add_argument("--format", default="markdown", choices=["markdown", "latex", "csv", "json"])
    p.add_argument("--dataset", action="append", default=None, help="keep these datasets (repeatable/comma)")
    p.add_argument("--method", action="append", default=None, help="keep these methods (repeatable/comma)")
    p.add_argument("--metric", action="append", default=None, help="keep these metrics (repeatable/comma)")
    p.add_argument("--confidence", type=float, default=None,
                   help="interval level (default: benchmark.report.CONFIDENCE, 0.95, as on the board)")  # fmt: skip
    p.add_argument("--n-boot", type=int, default=None,
                   help="bootstrap resamples (default: benchmark.report.N_BOOT, as on the board)")  # fmt: skip
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="paired comparison of two methods")
    p.add_argument("--test", default="wilcoxon", choices=["wilcoxon", "bootstrap"])
    p.add_argument("--ranks", action="store_true",
                   help="rank aggregation respecting each metric's direction, with bootstrap rank intervals "
                   "(paired over images) and shared ranks such as 2-3 where the intervals overlap")  # fmt: skip
    p.add_argument("--pairwise", metavar="METRIC", default=None,
                   help="matrix of paired Wilcoxon p-values (Holm-corrected) between the methods on METRIC")
    p.add_argument("--derived", metavar="NAME", default=None,
                   help="a derived score with its components, e.g. ntire2025 (the NTIRE 2025 perceptual score)")
    p.add_argument("--reported", action="store_true",
                   help="reported (published) numbers beside the measured ones: difference and reproduced or not")
    p.add_argument("--gt", action="store_true", help="the GT-quality table")
    p.add_argument("--plot-pd", nargs=2, metavar=("X", "Y"), help="perception-distortion plot of metrics X, Y")
    p.add_argument("--plot-dist", metavar="METRIC", help="per-image distribution plot of METRIC")
    p.add_argument("--plot-dir", default="plots", help="where plots go (default: plots/)")
    p.add_argument("--output", default=None, help="write the table to this file (atomically) instead of stdout")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "metrics",
        help="list metrics, their settings, direction and weight availability",
        formatter_class=_Fmt,
        epilog="example:\n  screensr bench metrics\n",
    )
    p.set_defaults(func=_metrics)

    p = sub.add_parser(
        "datasets",
        help="known datasets (where each comes from), the folder layouts, and what is present here",
        description="List the public test sets (ScreenSR, RealSR, DRealSR, and the StableSR/OSEDiff "
        "centre crops) with their origin and where --dataset NAME looks for them, the folder layouts "
        "the harness reads, and the datasets present under $SCREENSR_HOME/datasets (and any --dataset "
        "given). Reads folders only; downloads nothing.",
        formatter_class=_Fmt,
        epilog="examples:\n"
        "  screensr bench datasets\n"
        "  screensr bench datasets --dataset data/my_pairs --dataset hf:CSWRY/ScreenSR\n"
        "  screensr bench datasets --json\n",
    )
    p.add_argument("--dataset", action="append", default=[], metavar="PATH_OR_NAME",
                   help="also check this folder, name or hf: dataset (repeatable)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_datasets_list)

    p = sub.add_parser(
        "reconcile",
        help="which protocol reproduces a paper's numbers (PSNR/SSIM colour and crop, LPIPS net, checkpoints)",
        description="Score a method's outputs on a dataset with every protocol variant papers differ in "
        "(PSNR/SSIM: Y limited/full range or RGB, border crop, 8-bit rounding, SSIM window; LPIPS AlexNet/VGG "
        "and input range; NIQE colour, crop and model; MUSIQ/MANIQA/CLIPIQA checkpoints; resized outputs, "
        "flagged) and say which variant reproduces each reported number, by how much, and the --metrics "
        "item of `screensr bench run` that gives it. Writes nothing to the results store.",
        formatter_class=_Fmt,
        epilog="examples:\n"
        "  screensr bench reconcile --dataset DRealSR_crops --method folder:outputs/osediff \\\n"
        "      --reported psnr=27.92,ssim=0.7835,lpips=0.2968 --reported-n 93\n"
        "  screensr bench reconcile --dataset tests/data/drealsr_osediff \\\n"
        "      --method folder:tests/data/drealsr_osediff/osediff \\\n"
        "      --reported-csv tests/data/drealsr_osediff/osediff_published_metrics.csv --metrics psnr,ssim,niqe\n",
    )
    p.add_argument("--dataset", required=True, metavar="PATH_OR_NAME", help="the dataset (as for bench run)")
    p.add_argument("--scale", type=int, default=None, help="SR factor (default: inferred from the pairs)")
    p.add_argument("--layout", default=None, help="force a layout (as for bench run)")
    p.add_argument("--method", required=True, help="the method spec, e.g. folder:PATH of a paper's outputs")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reported", help="reported means, e.g. psnr=28.17,ssim=0.7691,lpips=0.2997")
    src.add_argument("--reported-csv", metavar="CSV", help="per-image values: an image column and one column per metric")
    p.add_argument("--reported-n", type=int, default=None,
                   help="how many images the reported means are over (default: the dataset's, or the CSV's rows)")  # fmt: skip
    p.add_argument("--metrics", default=None, help="only these of the reported metrics (comma list)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] for the metric models")
    p.add_argument("--format", default="markdown", choices=["markdown", "json"])
    p.add_argument("--top", type=int, default=5, help="images listed as explaining a gap (default 5)")
    p.add_argument("--output", default=None, help="also write the JSON result here (atomically)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reconcile)

    p = sub.add_parser(
        "export",
        help="export per-image scores to CSV, Parquet or JSON",
        formatter_class=_Fmt,
        epilog="example:\n  screensr bench export --store sqlite:///results.db scores.parquet\n",
    )
    _add_store(p)
    p.add_argument("path", help="output file (.csv, .parquet or .json)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "import-reported",
        help="import published numbers (a paper's table, per-image logs) into the store, apart from measured scores",
        description="Import reported results (CSV or YAML, each row cited) into the store's `reported` table. "
        "They are shown beside the measured numbers (`bench report --reported`, the board) and never "
        "enter a measured mean.",
        formatter_class=_Fmt,
        epilog="examples:\n"
        "  screensr bench import-reported vosr_appendix            # a shipped file (see --list)\n"
        "  screensr bench import-reported osediff_drealsr --dataset drealsr_osediff\n"
        "  screensr bench import-reported my_paper_table2.csv --store sqlite:///results.db\n"
        "CSV columns: dataset, method, metric, value, source [, image, n, table, link, protocol, note, decimals]\n",
    )
    _add_store(p)
    p.add_argument("file", nargs="?", help="a .csv/.yaml file, or the name of a shipped one")
    p.add_argument("--dataset", default=None, help="store every row under this dataset name (as the store names it)")
    p.add_argument("--method", default=None, help="store every row under this method name")
    p.add_argument("--list", action="store_true", help="list the shipped files and exit")
    p.set_defaults(func=_import_reported)


def _datasets(args):
    from benchmark.datasets import load_dataset
    from core.errors import ConfigError

    names = _split(args.name)
    if names and len(names) != len(args.dataset):
        raise ConfigError(f"--name given {len(names)} time(s) for {len(args.dataset)} --dataset(s); give one per dataset")
    # --on-error skip: a pair with an unreadable or mis-sized image is skipped when reached
    validate = getattr(args, "on_error", "stop") == "stop"
    return [
        load_dataset(d, scale=args.scale, layout=args.layout, name=names[i] if names else None, validate=validate)
        for i, d in enumerate(args.dataset)
    ]


def _evaluate(args, methods: list[str], metrics: str, gt: bool):
    from benchmark.runner import evaluate
    from core.errors import ConfigError

    # names and options first: a typo in --methods/--metrics is reported before any dataset is read
    built = _check_methods_and_metrics(methods, metrics, args.device)
    if args.workers > 1:
        # workers rebuild datasets from their paths; load here once to fail early on bad input
        loaded = _datasets(args)
        if args.on_error == "stop":
            _check_outputs_cover(built, loaded)
        if args.name or args.layout:
            raise ConfigError("--workers > 1 takes datasets by path only (no --name/--layout); use torchrun instead")
        datasets, meths = list(args.dataset), methods
    else:
        datasets, meths = _datasets(args), built
        if args.on_error == "stop":  # under skip, a pair without an output is skipped when reached
            _check_outputs_cover(built, datasets)
    from benchmark.store import ResultsStore

    store = ResultsStore(args.store)
    frame = evaluate(datasets, meths, metrics, store=store, workers=args.workers, device=args.device,
                     progress=not args.no_progress, gt=gt, scale=args.scale, on_error=args.on_error)  # fmt: skip
    return frame, store


def _check_methods_and_metrics(methods: list[str], metrics: str, device: str) -> list:
    """Build every method (models load lazily, so this is cheap) and resolve every metric."""
    from benchmark.methods import create_method
    from benchmark.metrics import resolve_metrics

    built = [create_method(m, device=device) for m in methods]
    resolve_metrics(metrics)
    return built


def _check_outputs_cover(methods: list, datasets: list) -> None:
    """A folder of precomputed outputs must hold one for every pair, checked before any scoring."""
    from benchmark.methods import FolderMethod, MissingOutputError

    for m in methods:
        if not isinstance(m, FolderMethod):
            continue
        for ds in datasets:
            missing = m.missing_outputs(ds.pairs)
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                raise MissingOutputError(
                    f"folder:{m.folder}: no SR output for {len(missing)} of the {len(ds)} pairs of {ds.name} "
                    f"({shown}); outputs are matched by file stem (the pair id or the LR file name)"
                )


def _print_tail(frame, store, fmt: str, strict: bool, table=None) -> int:
    """The run's summary (stdout), then what was skipped; the very last line (stderr) says it."""
    from benchmark.report import format_table, summary
    from core.distributed import dist_context

    if dist_context()[0] != 0:
        return 0
    stats = frame.attrs.get("stats", {})
    if len(frame):
        if table is None:
            datasets = sorted(set(frame["dataset"]))
            table = summary(frame, images=store.dataset_images_frame(datasets), runs=store.runs_frame(),
                            metrics=store.metrics_frame())  # fmt: skip
        sys.stdout.write(format_table(table, fmt))
        sys.stdout.flush()
    for name in frame.attrs.get("unavailable", {}):
        print(f"unavailable: {name} (missing weights, see above)", file=sys.stderr)
    skipped = frame.attrs.get("skipped", [])
    for k in skipped:
        who = "every method" if k["method"] == "*" else k["method"]
        print(f"skipped: {k['dataset']}/{k['image']} for {who}: {k['error']}", file=sys.stderr)
    parts = []
    if frame.attrs.get("unavailable"):
        parts.append(f"metric(s) {', '.join(frame.attrs['unavailable'])} (no weights)")
    if skipped:
        pairs = sorted({f"{k['dataset']}/{k['image']}" for k in skipped})
        parts.append(f"{len(pairs)} pair(s) ({', '.join(pairs[:10])}{', ...' if len(pairs) > 10 else ''})")
    done = f"computed {stats.get('computed', 0)} score(s), reused {stats.get('skipped', 0)} from the store"
    print(f"{done}; skipped: {'; '.join(parts)}" if parts else f"{done}; nothing skipped", file=sys.stderr)
    return 1 if strict and parts else 0


def _run(args) -> int:
    from core.errors import ConfigError

    methods = _split(args.methods) + list(args.method or [])
    if not methods:
        raise ConfigError("no methods given; e.g. --methods bicubic,lanczos or --methods folder:PATH")
    frame, store = _evaluate(args, methods, args.metrics, gt=not args.no_gt)
    return _print_tail(frame, store, args.format, args.strict)


def _gt_quality(args) -> int:
    from benchmark.metrics import resolve_metrics
    from benchmark.report import gt_quality
    from core.errors import ConfigError

    fr = [s.name for s in resolve_metrics(args.metrics) if s.kind == "FR"]
    if fr:
        raise ConfigError(f"gt-quality takes no-reference metrics only; drop {', '.join(fr)}")
    frame, store = _evaluate(args, [], args.metrics, gt=True)
    table = gt_quality(frame, images=store.dataset_images_frame()) if len(frame) else None
    return _print_tail(frame, store, args.format, args.strict, table=table)


def _report(args) -> int:
    from pathlib import Path

    import pandas as pd

    from benchmark import report
    from benchmark.store import ResultsStore

    store = ResultsStore(args.store)
    frame = store.scores_frame(
        dataset=_split(args.dataset) or None, method=_split(args.method) or None, metric=_split(args.metric) or None
    )
    # published rows alone are worth a table (each "not measured"); every other report needs scores
    if frame.empty and not (args.reported and len(store.reported_frame())):
        raise report.ReportError(f"no scores in {store.safe_url} for these filters; run `screensr bench run` first")
    # the comparison rule: current images only, n of N, incomplete methods unranked, failed runs shown
    images, metrics = store.dataset_images_frame(sorted(set(frame["dataset"]))), store.metrics_frame()
    runs = store.runs_frame()
    n_boot = report.N_BOOT if args.n_boot is None else args.n_boot
    confidence = report.CONFIDENCE if args.confidence is None else args.confidence
    if args.compare:
        table = report.compare(frame, *args.compare, images=images, test=args.test, confidence=confidence,
                               n_boot=n_boot)  # fmt: skip
    elif args.ranks:
        table = report.ranks(frame, images=images, metrics_frame=metrics, intervals=True, confidence=confidence,
                             n_boot=n_boot)  # fmt: skip
        table = report.with_versions(table, store.score_versions())
    elif args.pairwise:
        table = report.pairwise_tests(frame, args.pairwise, images=images, metrics_frame=metrics)
        if args.format in ("markdown", "latex"):  # the matrix to read; CSV/JSON keep the long form
            parts = [report.pairwise_matrix(g).reset_index().assign(dataset=d) for d, g in table.groupby("dataset")]
            table = pd.concat(parts, ignore_index=True) if parts else table
    elif args.derived:
        from benchmark.derived import derived_table

        table = derived_table(frame, args.derived, images=images, metrics_frame=metrics, confidence=confidence,
                              n_boot=n_boot)  # fmt: skip
    elif args.reported:
        from benchmark.reported import compare_reported

        reported = store.reported_frame()
        for column, wanted in (("dataset", args.dataset), ("method", args.method), ("metric", args.metric)):
            if _split(wanted):  # the report's own filters apply to the published rows too
                reported = reported[reported[column].isin(_split(wanted))]
        table = compare_reported(reported, frame, images=images, metrics_frame=metrics)
        if args.format in ("markdown", "latex"):  # the citation's long cells stay in CSV/JSON
            table = table.drop(columns=["link", "protocol"])
    elif args.gt:
        table = report.gt_quality(frame, images=images)
    else:
        table = report.summary(frame, images=images, runs=runs, metrics=metrics, confidence=confidence,
                               n_boot=n_boot)  # fmt: skip
        table = report.with_versions(table, store.score_versions())  # which version each row's scores are
    text = report.format_table(table, args.format)
    if args.output:
        from core.atomic import atomic_write_text

        atomic_write_text(Path(args.output), text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    problems = report.run_problems(runs[runs["dataset"].isin(set(frame["dataset"]))] if len(runs) else runs)
    for r in problems.itertuples(index=False):
        print(f"note: {r.method} on {r.dataset}: last run {r.status}: {r.error}", file=sys.stderr)
    frame, _, _ = report.current_scores(frame, images, metrics)  # plots show current images only
    if args.plot_pd or args.plot_dist:
        from benchmark import plots

        d = Path(args.plot_dir)
        if args.plot_pd:
            x, y = args.plot_pd
            print(f"wrote {plots.perception_distortion(frame, d / f'pd_{x}_{y}.png', x=x, y=y)}", file=sys.stderr)
        if args.plot_dist:
            m = args.plot_dist
            print(f"wrote {plots.distributions(frame, d / f'dist_{m}.png', metric=m)}", file=sys.stderr)
    return 0


def _metrics(args) -> int:
    from benchmark.metrics import METRICS, PROTOCOLS, check_weights

    print(f"{'metric':<10} {'pyiqa':<13} {'kind':<4} {'better':<7} {'status':<11} settings")
    for spec in METRICS.values():
        status = "ok" if check_weights(spec) is None else "no weights"
        better = "higher" if spec.higher_is_better else "lower"
        opts = ", ".join(f"{k}={v}" for k, v in spec.options.items()) or "-"
        if spec.size_policy != "any":
            opts += f"; size {spec.size_policy}"
        print(f"{spec.name:<10} {spec.pyiqa_name:<13} {spec.kind:<4} {better:<7} {status:<11} {opts}")
    print("\nprotocols:")
    for name, members in PROTOCOLS.items():
        print(f"  {name}: {', '.join(members)}")
    print("\n`screensr weights` lists the missing files and how to install them.")
    return 0


def _datasets_list(args) -> int:
    import json
    from dataclasses import asdict

    from benchmark.dataset_sources import KNOWN_DATASETS, LAYOUT_GUIDE, datasets_home
    from benchmark.datasets import survey

    found = survey(_split(args.dataset))
    if args.json:
        out = {
            "home": str(datasets_home()),
            "known": [
                {**asdict(d), "folder": str(d.folder()), "present": asdict(st)}
                for d, st in zip(KNOWN_DATASETS.values(), found["known"], strict=True)
            ],
            "layouts": {k: asdict(g) for k, g in LAYOUT_GUIDE.items()},
            "local": [asdict(st) for st in found["local"]],
            "given": [asdict(st) for st in found["given"]],
        }
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(format_survey(found))
    return 0


def _status_text(st, expected: int | None = None) -> str:
    """``19 pairs, x4, crops`` / ``absent`` / ``unusable: ...`` for one folder."""
    if st.error is not None:
        return f"unusable: {st.error}"
    if st.path is None:
        return "absent" + (f" ({st.note})" if st.note else "")
    text = f"{st.pairs} pairs, x{st.scale}, {st.layout} layout"
    if st.rejected:
        text += f" ({st.rejected} rejected)"
    if expected is not None and st.pairs != expected:
        text += f"; the published set has {expected}: scores will not match the papers"
    return text


def format_survey(found) -> str:  # noqa: ANN001 (the dict benchmark.datasets.survey returns)
    """The text of ``screensr bench datasets``."""
    from benchmark.dataset_sources import KNOWN_DATASETS, LAYOUT_GUIDE, datasets_home, how_to_get

    home = datasets_home()
    out = [f"Known datasets (--dataset NAME looks in {home}/NAME):", ""]
    for d, st in zip(KNOWN_DATASETS.values(), found["known"], strict=True):
        out.append(f"{d.name}  [{d.layout} layout, x{d.scale}]")
        out.append(f"  {how_to_get(d)}")
        out.append(f"  here: {_status_text(st, d.pairs)}" + (f" ({st.path})" if st.path else ""))
        out.append("")
    out.append("Layouts (detected from the folder; --layout forces one):")
    for g in LAYOUT_GUIDE.values():
        out.append(f"  {g.layout:9} {g.summary}")
        out += [f"  {'':9}   {line}" for line in g.structure]
    out.append("")
    out.append(f"Other datasets in {home}:")
    out += [f"  {st.given}: {_status_text(st)}" for st in found["local"]] or ["  (none)"]
    if found["given"]:
        out += ["", "Given with --dataset:"]
        out += [f"  {st.given}: {_status_text(st)}" + (f" ({st.path})" if st.path else "") for st in found["given"]]
    return "\n".join(out)


def _export(args) -> int:
    from benchmark.store import ResultsStore

    print(f"wrote {ResultsStore(args.store).export(args.path)}", file=sys.stderr)
    return 0


def _reconcile(args) -> int:
    import json
    from dataclasses import replace

    from benchmark import reconcile as rc
    from core.atomic import atomic_write_text
    from core.errors import ConfigError

    if args.reported is not None:
        reported = rc.parse_reported(args.reported, n=args.reported_n)
    else:
        reported = rc.with_reported_n(rc.read_reported_csv(args.reported_csv), args.reported_n)
    wanted = _split([args.metrics]) if args.metrics else []
    if wanted:
        names = [rc.metric_name(w, "--metrics") for w in wanted]
        absent = [w for w, n in zip(wanted, names, strict=True) if n not in {m.metric for m in reported.metrics}]
        if absent:
            raise ConfigError(f"--metrics {', '.join(absent)}: not among the reported metrics "
                              f"({', '.join(m.metric for m in reported.metrics)})")  # fmt: skip
        reported = replace(reported, metrics=tuple(m for m in reported.metrics if m.metric in names))
    result = rc.reconcile(args.dataset, args.method, reported, scale=args.scale, layout=args.layout,
                          device=args.device, progress=not args.no_progress)  # fmt: skip
    sys.stdout.write(rc.format_reconciliation(result, args.format, top=args.top))
    if args.output:
        atomic_write_text(args.output, json.dumps(rc.to_json(result), indent=1) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _import_reported(args) -> int:
    from benchmark.reported import ReportedFileError, import_reported, read_reported, shipped_files
    from benchmark.store import ResultsStore

    if args.list:
        for name, path in shipped_files().items():
            print(f"{name}\t{path}")
        return 0
    if not args.file:
        raise ReportedFileError("give the file to import (or --list for the shipped ones)")
    overrides = {k: v for k, v in (("dataset", args.dataset), ("method", args.method)) if v}
    records = read_reported(args.file, overrides=overrides)  # every row checked before anything is written
    store = ResultsStore(args.store)
    n = import_reported(store, records)
    print(f"imported {n} reported number(s) into {store.safe_url} (reported table; measured scores untouched)",
          file=sys.stderr)  # fmt: skip
    return 0
