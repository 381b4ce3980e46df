"""The runner: datasets x methods x metrics -> per-image scores in the results store.

For each pair of a dataset the runner reads the LR and HR files once (hash + decode), scores the
ground truth with the no-reference metrics once (pseudo-method :data:`benchmark.store.GT`, the
VOSR paper's Table 2), gets each method's SR output (cached), and scores all methods of the pair
together: metrics whose spec says ``batch_exact`` see one batch holding every method's output, so
each model runs once per pair. Metric models are built once per run, and only if something is
missing. The scores of one pair are written in one transaction: a killed run loses at most the
pair in flight, and a rerun computes only what the store lacks (identity: dataset, image,
method, metric, settings hash, method hash, content hash).

Failures are recorded, never silent: every method run (dataset x method of one call) gets a row
in the store's ``runs`` table, ``running`` until it ends ``complete``, ``partial`` (pairs skipped
with ``on_error="skip"``, listed), ``failed`` (the error that stopped it, naming the pair and
file) or ``aborted``. The images each dataset holds are recorded too: the reports compare
methods on them (:mod:`benchmark.report`). Images are checked against the pixel limit
(:mod:`core.imagelimits`) before decoding, generated outputs before they are generated.

Sharding: under ``torchrun`` (or :func:`evaluate` with ``workers=N``: this process is rank 0 and
N-1 forked children join a gloo group) each process takes every N-th pair
(``pairs[rank::world]``), uses its share of the cores, and writes its own rows; the values do
not depend on the sharding because every score depends on one pair only. Forked workers die with
the process that started them (``PR_SET_PDEATHSIG``, or a watchdog thread off Linux).

Example:
    >>> from benchmark.store import ResultsStore
    >>> frame = evaluate(["tests/data/drealsr_osediff"], ["folder:tests/data/drealsr_osediff/osediff"],
    ...                  ["psnr", "ssim"], store=ResultsStore("sqlite://"))   # doctest: +SKIP
    >>> frame.groupby("metric")["value"].mean()                             # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.datasets import Pair, PairedDataset, load_dataset
from benchmark.images import ImageFormatError, LoadedImage, read_image
from benchmark.methods import SRMethod, create_method
from benchmark.metrics import MetricModel, MetricSpec, check_weights, resolve_metrics
from benchmark.store import GT, ResultsStore, ScoreRecord
from core.distributed import (
    all_gather_objects,
    barrier,
    broadcast_object,
    dist_context,
    exit_with_parent,
    free_port,
)
from core.errors import ConfigError, UserError
from core.imagelimits import check_pixels

if TYPE_CHECKING:
    import pandas as pd

GT_METHOD_HASH = "ground-truth"


class WorkerError(UserError, RuntimeError):
    """A sharded run's worker process failed (its traceback is printed above the message)."""


class MetricError(UserError, RuntimeError):
    """A metric failed on an input; the message names the metric and the files."""


def versions() -> dict[str, str]:
    """Package versions recorded with every score."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pyiqa", "torch", "screensr"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def content_hash(*parts: str) -> str:
    """Hash of the input-file hashes a score depends on (LR, HR, and a precomputed SR file)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


#: What ``--on-error`` accepts: ``stop`` (the first error on a pair ends the run, the method run
#: is recorded ``failed`` with the error) or ``skip`` (the pair is skipped for the method it
#: failed on, listed and counted; nothing is stored for it).
ON_ERROR = ("stop", "skip")

#: Method name of a skip that concerns the pair's own files (every method of the pair skipped).
ALL_METHODS = "*"


@dataclass(frozen=True)
class Skipped:
    """One pair skipped with ``on_error="skip"``.

    Attributes:
        dataset, image: the pair.
        method: the method it was skipped for, :data:`ALL_METHODS` when the pair's own LR/HR
            could not be used, or :data:`benchmark.store.GT` for the ground-truth scores.
        error: ``"ExceptionType: message"`` (the message names the file).
    """

    dataset: str
    image: str
    method: str
    error: str


@dataclass
class RunStats:
    """What a run did (returned in ``frame.attrs['stats']``)."""

    computed: int = 0
    skipped: int = 0  # scores already in the store, reused
    pairs: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped_pairs: list[Skipped] = field(default_factory=list)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- the run
class _Models:
    """Metric models, built on first use and kept for the whole run."""

    def __init__(self, specs: Sequence[MetricSpec], device: str) -> None:
        self.specs = {s.name: s for s in specs}
        self.device = device
        self._models: dict[str, MetricModel] = {}

    def __getitem__(self, name: str) -> MetricModel:
        if name not in self._models:
            self._models[name] = MetricModel(self.specs[name], self.device).load()
        return self._models[name]


def _score(model: MetricModel, srs: list[LoadedImage], hr: LoadedImage | None, what: str) -> list[float]:
    """Scores of ``srs`` (each against ``hr`` for FR metrics), batched when the spec says exact."""
    import torch

    spec = model.spec
    try:
        if spec.batch_exact and len(srs) > 1 and len({s.array.shape for s in srs}) == 1:
            x = torch.cat([s.tensor() for s in srs])
            ref = hr.tensor().expand(len(srs), -1, -1, -1) if spec.kind == "FR" and hr else None
            vals = model(x, ref).tolist()
        else:
            vals = [float(model(s.tensor(), hr.tensor() if spec.kind == "FR" and hr else None)[0]) for s in srs]
    except (AssertionError, RuntimeError, ValueError) as exc:
        files = ", ".join(str(s.path) for s in srs)
        raise MetricError(f"metric {spec.name} failed on {what} ({files}): {exc}") from exc
    for v, s in zip(vals, srs, strict=True):
        if v != v:
            raise MetricError(f"metric {spec.name} returned NaN for {s.path}; check the image")
    return vals


def _check_size(sr: LoadedImage, hr: LoadedImage | None, lr: LoadedImage, scale: int, method: str) -> None:
    want = (hr.size if hr is not None else (lr.size[0] * scale, lr.size[1] * scale))
    if sr.size != want:
        ref = f"HR {hr.path}" if hr is not None else f"x{scale} of LR {lr.path}"
        raise ImageFormatError(
            f"method {method!r}: SR output {sr.path} is {sr.size[0]}x{sr.size[1]} but {ref} is "
            f"{want[0]}x{want[1]}; outputs are never resized: fix the method or its outputs"
        )


@dataclass
class _DatasetRun:
    """Everything one rank needs to score the pairs of one dataset."""

    ds: PairedDataset
    methods: Sequence[SRMethod]
    specs: Sequence[MetricSpec]
    models: _Models
    have: dict[str, set[tuple]]
    store: ResultsStore
    vers: dict[str, str]
    gt: bool
    stats: RunStats
    on_error: str
    run_id: str

    def failed(self, pair: Pair, names: Sequence[str] | None, exc: BaseException) -> bool:
        """Handle an error on ``pair`` (``names``: the methods it concerns, None for all).

        Returns:
            True when the caller must re-raise (``stop``: the failed runs are recorded first);
            False when the pair was recorded as skipped (``skip``).
        """
        who = list(names) if names is not None else [m.name for m in self.methods] + ([GT] if self.gt else [])
        text = f"pair {pair.id!r}: {_error_text(exc)}"
        if self.on_error == "stop":
            self.store.finish_runs(self.run_id, self.ds.name, who, "failed", error=text)
            return True
        method = ALL_METHODS if names is None else None
        for name in [method] if method else who:
            self.stats.skipped_pairs.append(Skipped(self.ds.name, pair.id, name, _error_text(exc)))
        return False


def _run_pair(run: _DatasetRun, pair: Pair) -> None:
    """Score one pair for every method and metric that the store lacks; write it in one go.

    Errors are handled per unit of work (``run.on_error``): the pair's own LR/HR (every method),
    the ground truth's scores (GT only), each method's output, each method's scores. Under
    ``skip`` nothing is stored for a unit that failed; under ``stop`` nothing of the pair is.
    """
    ds, stats = run.ds, run.stats
    try:
        lr = read_image(pair.lr)
        hr = read_image(pair.hr) if pair.hr is not None else None
        if hr is not None and hr.size != (lr.size[0] * ds.scale, lr.size[1] * ds.scale):
            raise ImageFormatError(
                f"pair {pair.id!r}: HR {hr.path} is {hr.size[0]}x{hr.size[1]}, LR {lr.path} is "
                f"{lr.size[0]}x{lr.size[1]}: not x{ds.scale}"
            )
    except Exception as exc:
        if run.failed(pair, None, exc):
            raise
        return
    records: dict[str, list[ScoreRecord]] = {}

    def rec(method: str, metric: MetricSpec, value: float, mhash: str, chash: str) -> None:
        records.setdefault(method, []).append(
            ScoreRecord(ds.name, pair.id, method, metric.name, value, metric.settings_hash, mhash, chash, run.vers)
        )

    # ground truth, no-reference metrics: once per dataset image
    if run.gt and hr is not None:
        chash = content_hash(hr.sha256)
        try:
            for spec in run.specs:
                if spec.kind != "NR":
                    continue
                key = (ds.name, pair.id, GT, spec.name, spec.settings_hash, GT_METHOD_HASH, chash)
                if key in run.have[GT]:
                    stats.skipped += 1
                    continue
                model = run.models[spec.name]
                rec(GT, spec, _score(model, [hr], None, f"GT of pair {pair.id!r}")[0], GT_METHOD_HASH, chash)
        except Exception as exc:
            records.pop(GT, None)
            if run.failed(pair, [GT], exc):
                raise

    # methods: collect the SR outputs that still need some metric, then score per metric
    todo: dict[str, list[tuple[SRMethod, LoadedImage, str]]] = {}
    base = [lr.sha256, hr.sha256 if hr is not None else "-"]
    for method in run.methods:
        try:
            if not method.precomputed:
                # a generated output is checked before it exists: a huge LR x scale never runs
                check_pixels(lr.size[0] * ds.scale, lr.size[1] * ds.scale,
                             f"the x{ds.scale} output of {lr.path} by method {method.name!r}")  # fmt: skip
            sr_pre = method.output(pair.id, lr, ds.scale) if method.precomputed else None
            chash = content_hash(*base, sr_pre.sha256) if sr_pre is not None else content_hash(*base)
            need = []
            for spec in run.specs:
                if spec.kind == "FR" and hr is None:
                    continue
                key = (ds.name, pair.id, method.name, spec.name, spec.settings_hash, method.method_hash, chash)
                if key in run.have[method.name]:
                    stats.skipped += 1
                else:
                    need.append(spec)
            if not need:
                continue
            sr = sr_pre if sr_pre is not None else method.output(pair.id, lr, ds.scale)
            _check_size(sr, hr, lr, ds.scale, method.name)
        except Exception as exc:
            if run.failed(pair, [method.name], exc):
                raise
            continue
        for spec in need:
            todo.setdefault(spec.name, []).append((method, sr, chash))
    broken: set[str] = set()
    for spec in run.specs:
        items = [it for it in todo.get(spec.name, []) if it[0].name not in broken]
        if not items:
            continue
        model = run.models[spec.name]  # a metric that cannot load fails the run, whatever on_error says
        try:
            vals: list[float | BaseException] = list(_score(model, [sr for _, sr, _ in items], hr, f"pair {pair.id!r}"))
        except Exception as exc:
            if len(items) == 1:
                vals = [exc]
            else:  # one batch for all methods: score each alone to find which output it was
                vals = []
                for _, sr, _ in items:
                    try:
                        vals.append(_score(model, [sr], hr, f"pair {pair.id!r}")[0])
                    except Exception as single:  # noqa: PERF203 - the error path only
                        vals.append(single)
        for (method, _, chash), v in zip(items, vals, strict=True):
            if isinstance(v, BaseException):
                broken.add(method.name)
                records.pop(method.name, None)
                if run.failed(pair, [method.name], v):
                    raise v
                continue
            rec(method.name, spec, v, method.method_hash, chash)
    rows = [r for name, recs in records.items() if name not in broken for r in recs]
    if rows:
        run.store.add_scores(rows)  # one transaction per pair: a kill loses at most this pair
        stats.computed += len(rows)
    stats.pairs += 1


def evaluate(
    datasets: Sequence[PairedDataset | str],
    methods: Sequence[SRMethod | str],
    metrics: Sequence[MetricSpec | str] | str,
    *,
    store: ResultsStore | str,
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    gt: bool = True,
    scale: int | None = None,
    on_error: str = "stop",
) -> pd.DataFrame:
    """Score every method on every dataset with every metric; store and return per-image scores.

    Args:
        datasets: :class:`PairedDataset` objects or paths/names for :func:`load_dataset`.
        methods: :class:`SRMethod` objects or method specs (``bicubic``, ``folder:PATH``, ...).
        metrics: specs, names, or a comma list / protocol name (``osediff``).
        store: a :class:`ResultsStore` or its URL.
        workers: processes to shard pairs across (torch.distributed, gloo); this process is
            rank 0, the others are forked (spawned for CUDA or with
            ``SCREENSR_START_METHOD=spawn``) and exit if this process dies. Datasets and methods
            must then be given as strings.
        device: ``cpu`` or ``cuda[:i]`` for the metric models.
        progress: show tqdm bars (pair count, ETA).
        gt: also score the ground truth with the no-reference metrics (method ``GT``).
        scale: SR factor for datasets given as paths (default: inferred).
        on_error: ``stop`` (default): the first error on a pair (unreadable or oversized image,
            missing or wrong-size output, a method or metric failing on it) ends the run, and the
            method run is recorded as ``failed`` with the error. ``skip``: that pair is skipped
            for the method it failed on (for every method when its own LR/HR failed), listed in
            ``frame.attrs['skipped']`` and counted; nothing is stored for it.

    Every dataset's current image ids are recorded in the store (the reference set of the
    reports), and every method run gets a row in the store's ``runs`` table with its outcome.

    Returns:
        Per-image scores of this run's datasets (their current pairs), methods (and ``GT``) and
        metrics, with the exact settings and method hashes used: columns ``dataset, image,
        method, metric, value`` plus provenance. ``frame.attrs['unavailable']`` maps metrics
        skipped for missing weights to the message naming the files; ``frame.attrs['skipped']``
        lists the skipped pairs (:class:`Skipped` as dicts); ``frame.attrs['stats']`` says what
        was computed, reused and skipped; ``frame.attrs['run_id']`` names the run in the store.

    Example:
        >>> from benchmark.store import ResultsStore
        >>> store = ResultsStore("sqlite://")
        >>> f = evaluate(["tests/data/drealsr_osediff"], ["bicubic"], "psnr",
        ...              store=store, progress=False)                   # doctest: +SKIP
        >>> f[["image", "method", "metric", "value"]].head(1)             # doctest: +SKIP
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r}: choose one of {', '.join(ON_ERROR)}")
    if workers > 1:
        return _spawn(datasets, methods, metrics, store=store, workers=workers, device=device,
                      progress=progress, gt=gt, scale=scale, on_error=on_error)  # fmt: skip
    if isinstance(store, str):
        store = ResultsStore(store)
    rank, world = dist_context()
    # under skip, a pair with an unreadable or mis-sized image is skipped when it is reached, not
    # refused with the whole dataset up front
    dss = [d if isinstance(d, PairedDataset) else load_dataset(d, scale=scale, validate=on_error == "stop")
           for d in datasets]  # fmt: skip
    names = [d.name for d in dss]
    if len(set(names)) != len(names):
        raise ConfigError(f"two datasets share a name ({names}); name them apart (name= / --name)")
    meths = [m if isinstance(m, SRMethod) else create_method(m, device=device) for m in methods]
    mnames = [m.name for m in meths]
    if len(set(mnames)) != len(mnames) or GT in mnames:
        raise ConfigError(f"method names must be unique and not {GT!r}: {mnames}; rename with NAME=SPEC")
    specs = _specs(metrics)
    stats = RunStats()
    usable: list[MetricSpec] = []
    for spec in specs:
        msg = check_weights(spec)
        if msg is None:
            usable.append(spec)
        else:
            stats.unavailable[spec.name] = msg
            if rank == 0:
                print(f"warning: metric {spec.name} unavailable, not computed:\n{msg}", file=sys.stderr)
    run_id = broadcast_object(uuid.uuid4().hex)  # rank 0 draws it: the same id on every rank
    if rank == 0:
        for d in dss:
            store.upsert_dataset(d.record())
            # the reference set of every report: the images this dataset holds now
            store.set_dataset_images(d.name, {p.id: p.hr is not None for p in d.pairs})
        for m in meths:
            store.upsert_method(m.record())
        for s in usable:
            store.upsert_metric(s.record())
    barrier()
    models = _Models(usable, device)
    vers = versions()
    from tqdm import tqdm

    try:
        for ds in dss:
            if ds.n_rejected and rank == 0:
                print(f"{ds.name}: skipping {ds.n_rejected} pair(s) rejected in the manifest", file=sys.stderr)
            fr = [s.name for s in usable if s.kind == "FR"]
            if not ds.has_reference and fr and rank == 0:
                print(f"{ds.name}: no HR images (LR only): full-reference metrics {', '.join(fr)} do not apply",
                      file=sys.stderr)  # fmt: skip
            gt_here = gt and ds.has_reference and any(s.kind == "NR" for s in usable)
            runs = [(m.name, m.method_hash) for m in meths] + ([(GT, GT_METHOD_HASH)] if gt_here else [])
            # every rank registers the runs (insert-or-ignore): a rank that fails at once still
            # finds its run rows to mark failed
            store.start_runs(run_id, ds.name, runs, n_pairs=len(ds.pairs), metrics=[s.name for s in usable],
                             unavailable=sorted(stats.unavailable))  # fmt: skip
            have = {m.name: store.existing_keys(ds.name, m.name) for m in meths}
            have[GT] = store.existing_keys(ds.name, GT)
            work = _DatasetRun(ds, meths, usable, models, have, store, vers, gt, stats, on_error, run_id)
            shard = ds.pairs[rank::world]
            bar = tqdm(shard, desc=f"{ds.name} [{rank}/{world}]" if world > 1 else ds.name, unit="pair",
                       disable=not progress, position=rank, leave=True, file=sys.stderr)  # fmt: skip
            first_skip = len(stats.skipped_pairs)
            try:
                for pair in bar:
                    _run_pair(work, pair)
                    bar.set_postfix(computed=stats.computed, skipped=stats.skipped)
                skips = [k for part in all_gather_objects(stats.skipped_pairs[first_skip:]) for k in part]
            except BaseException as exc:
                why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by an error: {_error_text(exc)}"
                store.finish_runs(run_id, ds.name, [n for n, _ in runs], "aborted", error=why)
                raise
            if rank == 0:
                _finish_dataset(store, run_id, ds.name, [n for n, _ in runs], skips)
    finally:
        for m in meths:
            m.close()
    barrier()
    # totals over all ranks, so every rank reports the whole run
    gathered = all_gather_objects(([stats.computed, stats.skipped, stats.pairs], stats.skipped_pairs))
    counts = [sum(c[0][i] for c in gathered) for i in range(3)]
    skipped = [k for c in gathered for k in c[1]]
    stats.computed, stats.skipped, stats.pairs = counts
    skipped = sorted(skipped, key=lambda k: (k.dataset, k.image, k.method))
    frame = _result_frame(store, dss, meths, usable, gt)
    frame.attrs["unavailable"] = dict(stats.unavailable)
    frame.attrs["skipped"] = [dataclasses.asdict(k) for k in skipped]
    frame.attrs["stats"] = {"computed": stats.computed, "skipped": stats.skipped, "pairs": stats.pairs,
                            "skipped_pairs": len({(k.dataset, k.image) for k in skipped})}  # fmt: skip
    frame.attrs["run_id"] = run_id
    return frame


def _finish_dataset(store: ResultsStore, run_id: str, dataset: str, names: list[str], skips: list[Skipped]) -> None:
    """Record each method run's outcome: ``complete``, or ``partial`` with the skipped pairs."""
    by_method: dict[str, list[Skipped]] = {n: [] for n in names}
    for k in skips:
        for n in names if k.method == ALL_METHODS else [k.method]:
            by_method.setdefault(n, []).append(k)
    for name, mine in by_method.items():
        if not mine:
            store.finish_runs(run_id, dataset, [name], "complete")
            continue
        pairs = sorted({k.image for k in mine})
        listed = "; ".join(f"{k.image}: {k.error}" for k in mine[:20])
        more = f"; ... and {len(mine) - 20} more" if len(mine) > 20 else ""
        store.finish_runs(run_id, dataset, [name], "partial", n_skipped=len(pairs),
                          error=f"skipped {len(pairs)} pair(s) ({', '.join(pairs[:20])}): {listed}{more}")  # fmt: skip


def _specs(metrics: Sequence[MetricSpec | str] | str) -> list[MetricSpec]:
    """Specs from names, comma lists, protocol names or ready specs (order kept, no repeats)."""
    if isinstance(metrics, str):
        return resolve_metrics(metrics)
    out: dict[str, MetricSpec] = {}
    for m in metrics:
        for spec in [m] if isinstance(m, MetricSpec) else resolve_metrics(m):
            out.setdefault(spec.name, spec)
    if not out:
        raise ConfigError("no metrics given; e.g. psnr,ssim,niqe or a protocol such as osediff")
    return list(out.values())


def _result_frame(store, dss, meths, specs, gt) -> pd.DataFrame:
    """This run's rows: exact settings and method hashes (older configs are ignored)."""
    import pandas as pd

    hashes = {m.name: m.method_hash for m in meths}
    if gt:
        hashes[GT] = GT_METHOD_HASH
    frame = store.scores_frame(
        dataset=[d.name for d in dss], method=list(hashes), metric=[s.name for s in specs], latest=False
    )
    settings = {s.name: s.settings_hash for s in specs}
    keep = (frame["method"].map(hashes) == frame["method_hash"]) & (
        frame["metric"].map(settings) == frame["settings_hash"]
    )
    # only the pairs the datasets hold now: scores of removed pairs are history, not this run
    current = {(d.name, p.id) for d in dss for p in d.pairs}
    keep &= pd.Series([(d, i) in current for d, i in zip(frame["dataset"], frame["image"], strict=True)],
                      index=frame.index, dtype=bool)  # fmt: skip
    frame = frame[keep].drop_duplicates(["dataset", "image", "method", "metric"], keep="last")
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------------------- workers
def _start_method(device: str) -> str:
    """``fork`` on CPU where available: workers inherit the imported libraries (pyiqa takes ~4 s
    of CPU to import, which would eat the gain of a second process); ``spawn`` for CUDA (a
    forked child cannot use CUDA) or when ``SCREENSR_START_METHOD`` says so."""
    import multiprocessing as mp

    override = os.environ.get("SCREENSR_START_METHOD")
    if override:
        if override not in mp.get_all_start_methods():
            raise ConfigError(f"SCREENSR_START_METHOD={override!r}: choose one of {mp.get_all_start_methods()}")
        return override
    if device.startswith("cuda") or "fork" not in mp.get_all_start_methods():
        return "spawn"
    return "fork"


def _rank_device(device: str, rank: int) -> str:
    """``cuda`` without an index: one GPU per rank (round robin); anything else unchanged."""
    if device == "cuda":
        import torch

        n = torch.cuda.device_count()
        return f"cuda:{rank % n}" if n > 1 else device
    return device


def _worker(rank: int, world: int, port: int, kwargs: dict[str, Any], threads: int, parent: int) -> None:
    import traceback

    import torch
    import torch.distributed as dist

    exit_with_parent(parent)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        evaluate(**{**kwargs, "device": _rank_device(kwargs["device"], rank)}, workers=1)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        # exit without the group's goodbye: the other ranks see the closed connection and fail at
        # their next barrier instead of waiting for this rank until the timeout
        os._exit(1)
    dist.destroy_process_group()


def _spawn(datasets, methods, metrics, *, store, workers, device, progress, gt, scale, on_error) -> pd.DataFrame:
    """Run ``evaluate`` as rank 0 of a gloo group here, with ranks 1..N-1 in child processes; each
    process uses its share of the cores. Returns the whole run's frame (all shards)."""
    import multiprocessing as mp

    import torch
    import torch.distributed as dist

    url = store.url if isinstance(store, ResultsStore) else str(store)
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ConfigError("--workers > 1 needs a shared store (a SQLite file or a server), not an in-memory one")
    if any(not isinstance(x, str) for x in (*datasets, *methods)):
        raise ValueError("with workers > 1 pass datasets and methods as strings (they are rebuilt in each worker)")
    if dist.is_available() and dist.is_initialized():
        raise ConfigError("workers > 1 inside an existing torch.distributed group: use torchrun's ranks instead")
    spec_text = metrics if isinstance(metrics, str) else [m if isinstance(m, str) else m.name for m in metrics]
    ResultsStore(url).close()  # create the tables once, before the workers open the store
    threads = max(1, (os.cpu_count() or 1) // workers)
    kwargs = dict(datasets=list(datasets), methods=list(methods), metrics=spec_text, store=url, device=device,
                  progress=progress, gt=gt, scale=scale, on_error=on_error)  # fmt: skip
    port = free_port()
    # typeshed types get_context(str) as BaseContext, which lacks Process; every concrete one has it
    process = mp.get_context(_start_method(device)).Process  # type: ignore[attr-defined]
    procs = [process(target=_worker, args=(r, workers, port, kwargs, threads, os.getpid())) for r in range(1, workers)]
    for p in procs:
        p.start()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=workers)
        try:
            frame = evaluate(**{**kwargs, "device": _rank_device(device, 0)}, workers=1)
        finally:
            dist.destroy_process_group()
    except BaseException as exc:
        for p in procs:
            p.join(5)  # a rank that failed has exited: its error is the one to report
        failed = [f"rank {r}: exit code {p.exitcode}" for r, p in enumerate(procs, 1) if p.exitcode not in (None, 0)]
        for p in procs:
            p.terminate()
        if failed and not isinstance(exc, KeyboardInterrupt):
            raise WorkerError(f"evaluation worker(s) failed ({'; '.join(failed)}); the traceback is above") from exc
        raise
    finally:
        torch.set_num_threads(before)
        for p in procs:
            p.join()
    failed = [f"rank {r}: exit code {p.exitcode}" for r, p in enumerate(procs, 1) if p.exitcode != 0]
    if failed:
        raise WorkerError(f"evaluation worker(s) failed ({'; '.join(failed)}); the traceback is above")
    return frame
