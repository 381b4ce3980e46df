"""The runner: datasets x methods x metrics -> per-image scores in the results store.

For each pair of a dataset the runner reads the LR and HR files once (hash + decode), scores the
ground truth with the no-reference metrics once (pseudo-method :data:`benchmark.store.GT`, the
VOSR paper's Table 2), gets each method's SR output (cached), and scores all methods of the pair
together: metrics whose spec says ``batch_exact`` see one batch holding every method's output, so
each model runs once per pair. Metric models are built once per run, and only if something is
missing. The scores of one pair are written in one transaction: a killed run loses at most the
pair in flight, and a rerun computes only what the store lacks (identity: dataset, image,
method, metric, settings hash, method hash, content hash).

Sharding: under ``torchrun`` (or :func:`evaluate` with ``workers=N``: this process is rank 0 and
N-1 forked children join a gloo group) each process takes every N-th pair
(``pairs[rank::world]``), uses its share of the cores, and writes its own rows; the values do
not depend on the sharding because every score depends on one pair only.

Example:
    >>> from benchmark.store import ResultsStore
    >>> frame = evaluate(["tests/data/drealsr_osediff"], ["folder:tests/data/drealsr_osediff/osediff"],
    ...                  ["psnr", "ssim"], store=ResultsStore("sqlite://"))   # doctest: +SKIP
    >>> frame.groupby("metric")["value"].mean()                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmark.datasets import Pair, PairedDataset, load_dataset
from benchmark.images import ImageFormatError, LoadedImage, read_image
from benchmark.methods import SRMethod, create_method
from benchmark.metrics import MetricModel, MetricSpec, check_weights, resolve_metrics
from benchmark.store import GT, ResultsStore, ScoreRecord

if TYPE_CHECKING:
    import pandas as pd

GT_METHOD_HASH = "ground-truth"


class WorkerError(RuntimeError):
    """A sharded run's worker process failed (its traceback is printed above the message)."""

    is_user_error = True


class MetricError(RuntimeError):
    """A metric failed on an input; the message names the metric and the files."""

    is_user_error = True


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


@dataclass
class RunStats:
    """What a run did (returned in ``frame.attrs['stats']``)."""

    computed: int = 0
    skipped: int = 0
    pairs: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- distribution
def dist_context() -> tuple[int, int]:
    """``(rank, world_size)``: from an initialised process group, else torchrun's env, else (0, 1).

    Under torchrun (``RANK``/``WORLD_SIZE`` set) a gloo group is created, which works on CPU and
    GPU alike (the harness only uses it for barriers).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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


def _run_pair(
    ds: PairedDataset,
    pair: Pair,
    methods: Sequence[SRMethod],
    specs: Sequence[MetricSpec],
    models: _Models,
    have: dict[str, set[tuple]],
    store: ResultsStore,
    vers: dict[str, str],
    gt_metrics: bool,
    stats: RunStats,
) -> None:
    lr = read_image(pair.lr)
    hr = read_image(pair.hr) if pair.hr is not None else None
    if hr is not None and hr.size != (lr.size[0] * ds.scale, lr.size[1] * ds.scale):
        raise ImageFormatError(
            f"pair {pair.id!r}: HR {hr.path} is {hr.size[0]}x{hr.size[1]}, LR {lr.path} is "
            f"{lr.size[0]}x{lr.size[1]}: not x{ds.scale}"
        )
    records: list[ScoreRecord] = []

    def rec(method: str, metric: MetricSpec, value: float, mhash: str, chash: str) -> None:
        records.append(ScoreRecord(ds.name, pair.id, method, metric.name, value, metric.settings_hash, mhash, chash, vers))

    # ground truth, no-reference metrics: once per dataset image
    if gt_metrics and hr is not None:
        chash = content_hash(hr.sha256)
        for spec in specs:
            if spec.kind != "NR":
                continue
            key = (ds.name, pair.id, GT, spec.name, spec.settings_hash, GT_METHOD_HASH, chash)
            if key in have[GT]:
                stats.skipped += 1
                continue
            rec(GT, spec, _score(models[spec.name], [hr], None, f"GT of pair {pair.id!r}")[0], GT_METHOD_HASH, chash)

    # methods: collect the SR outputs that still need some metric, then score per metric
    todo: dict[str, list[tuple[SRMethod, LoadedImage, str]]] = {}
    base = [lr.sha256, hr.sha256 if hr is not None else "-"]
    for method in methods:
        sr_pre = method.output(pair.id, lr, ds.scale) if method.precomputed else None
        chash = content_hash(*base, sr_pre.sha256) if sr_pre is not None else content_hash(*base)
        need = []
        for spec in specs:
            if spec.kind == "FR" and hr is None:
                continue
            key = (ds.name, pair.id, method.name, spec.name, spec.settings_hash, method.method_hash, chash)
            if key in have[method.name]:
                stats.skipped += 1
            else:
                need.append(spec)
        if not need:
            continue
        sr = sr_pre if sr_pre is not None else method.output(pair.id, lr, ds.scale)
        _check_size(sr, hr, lr, ds.scale, method.name)
        for spec in need:
            todo.setdefault(spec.name, []).append((method, sr, chash))
    for spec in specs:
        items = todo.get(spec.name)
        if not items:
            continue
        vals = _score(models[spec.name], [sr for _, sr, _ in items], hr, f"pair {pair.id!r}")
        for (method, _, chash), v in zip(items, vals, strict=True):
            rec(method.name, spec, v, method.method_hash, chash)
    if records:
        store.add_scores(records)  # one transaction per pair: a kill loses at most this pair
        stats.computed += len(records)
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
) -> pd.DataFrame:
    """Score every method on every dataset with every metric; store and return per-image scores.

    Args:
        datasets: :class:`PairedDataset` objects or paths/names for :func:`load_dataset`.
        methods: :class:`SRMethod` objects or method specs (``bicubic``, ``folder:PATH``, ...).
        metrics: specs, names, or a comma list / protocol name (``osediff``).
        store: a :class:`ResultsStore` or its URL.
        workers: processes to shard pairs across (torch.distributed, gloo); this process is
            rank 0, the others are forked (spawned for CUDA or with
            ``SCREENSR_START_METHOD=spawn``). Datasets and methods must then be given as strings.
        device: ``cpu`` or ``cuda[:i]`` for the metric models.
        progress: show tqdm bars (pair count, ETA).
        gt: also score the ground truth with the no-reference metrics (method ``GT``).
        scale: SR factor for datasets given as paths (default: inferred).

    Returns:
        Per-image scores of this run's datasets, methods (and ``GT``) and metrics, with the exact
        settings and method hashes used: columns ``dataset, image, method, metric, value`` plus
        provenance. ``frame.attrs['unavailable']`` maps metrics skipped for missing weights to
        the message naming the files; ``frame.attrs['stats']`` says what was computed/skipped.

    Example:
        >>> from benchmark.store import ResultsStore
        >>> store = ResultsStore("sqlite://")
        >>> f = evaluate(["tests/data/drealsr_osediff"], ["bicubic"], "psnr",
        ...              store=store, progress=False)                   # doctest: +SKIP
        >>> f[["image", "method", "metric", "value"]].head(1)             # doctest: +SKIP
    """
    if workers > 1:
        return _spawn(datasets, methods, metrics, store=store, workers=workers, device=device,
                      progress=progress, gt=gt, scale=scale)  # fmt: skip
    if isinstance(store, str):
        store = ResultsStore(store)
    rank, world = dist_context()
    dss = [d if isinstance(d, PairedDataset) else load_dataset(d, scale=scale) for d in datasets]
    names = [d.name for d in dss]
    if len(set(names)) != len(names):
        raise ValueError(f"two datasets share a name ({names}); name them apart (name= / --name)")
    meths = [m if isinstance(m, SRMethod) else create_method(m, device=device) for m in methods]
    mnames = [m.name for m in meths]
    if len(set(mnames)) != len(mnames) or GT in mnames:
        raise ValueError(f"method names must be unique and not {GT!r}: {mnames}; rename with NAME=SPEC")
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
    if rank == 0:
        for d in dss:
            store.upsert_dataset(d.record())
        for m in meths:
            store.upsert_method(m.record())
        for s in usable:
            store.upsert_metric(s.record())
    _barrier()
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
            have = {m.name: store.existing_keys(ds.name, m.name) for m in meths}
            have[GT] = store.existing_keys(ds.name, GT)
            shard = ds.pairs[rank::world]
            bar = tqdm(shard, desc=f"{ds.name} [{rank}/{world}]" if world > 1 else ds.name, unit="pair",
                       disable=not progress, position=rank, leave=True, file=sys.stderr)  # fmt: skip
            for pair in bar:
                _run_pair(ds, pair, meths, usable, models, have, store, vers, gt, stats)
                bar.set_postfix(computed=stats.computed, skipped=stats.skipped)
    finally:
        for m in meths:
            m.close()
    _barrier()
    counts = [stats.computed, stats.skipped, stats.pairs]
    import torch.distributed as dist

    if world > 1 and dist.is_initialized():
        # totals over all ranks, so every rank reports the whole run
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, counts)
        counts = [sum(c[i] for c in gathered) for i in range(3)]
    stats.computed, stats.skipped, stats.pairs = counts
    frame = _result_frame(store, dss, meths, usable, gt)
    frame.attrs["unavailable"] = dict(stats.unavailable)
    frame.attrs["stats"] = {"computed": stats.computed, "skipped": stats.skipped, "pairs": stats.pairs}
    return frame


def _specs(metrics: Sequence[MetricSpec | str] | str) -> list[MetricSpec]:
    """Specs from names, comma lists, protocol names or ready specs (order kept, no repeats)."""
    if isinstance(metrics, str):
        return resolve_metrics(metrics)
    out: dict[str, MetricSpec] = {}
    for m in metrics:
        for spec in [m] if isinstance(m, MetricSpec) else resolve_metrics(m):
            out.setdefault(spec.name, spec)
    if not out:
        raise ValueError("no metrics given; e.g. psnr,ssim,niqe or a protocol such as osediff")
    return list(out.values())


def _result_frame(store, dss, meths, specs, gt) -> pd.DataFrame:
    """This run's rows: exact settings and method hashes (older configs are ignored)."""
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
            raise ValueError(f"SCREENSR_START_METHOD={override!r}: choose one of {mp.get_all_start_methods()}")
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


def _worker(rank: int, world: int, port: int, kwargs: dict[str, Any], threads: int) -> None:
    import traceback

    import torch
    import torch.distributed as dist

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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(datasets, methods, metrics, *, store, workers, device, progress, gt, scale) -> pd.DataFrame:
    """Run ``evaluate`` as rank 0 of a gloo group here, with ranks 1..N-1 in child processes; each
    process uses its share of the cores. Returns the whole run's frame (all shards)."""
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as tmp

    url = store.url if isinstance(store, ResultsStore) else str(store)
    if url in ("sqlite://", "sqlite:///:memory:"):
        raise ValueError("--workers > 1 needs a shared store (a SQLite file or a server), not an in-memory one")
    if any(not isinstance(x, str) for x in (*datasets, *methods)):
        raise ValueError("with workers > 1 pass datasets and methods as strings (they are rebuilt in each worker)")
    if dist.is_available() and dist.is_initialized():
        raise ValueError("workers > 1 inside an existing torch.distributed group: use torchrun's ranks instead")
    spec_text = metrics if isinstance(metrics, str) else [m if isinstance(m, str) else m.name for m in metrics]
    ResultsStore(url).close()  # create the tables once, before the workers open the store
    threads = max(1, (os.cpu_count() or 1) // workers)
    kwargs = dict(datasets=list(datasets), methods=list(methods), metrics=spec_text, store=url, device=device,
                  progress=progress, gt=gt, scale=scale)  # fmt: skip
    port = _free_port()
    ctx = tmp.get_context(_start_method(device))
    procs = [ctx.Process(target=_worker, args=(r, workers, port, kwargs, threads)) for r in range(1, workers)]
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
