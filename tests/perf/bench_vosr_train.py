"""Training throughput and memory of the VOSR trainer.

Run: ``python tests/perf/bench_vosr_train.py [--steps 30]``

CPU (always): the ``tiny`` recipe, full pipeline on real photos (the colour photographs that ship
with scikit-image, 300x451 to 1411x1411 px, saved as quality-95 JPEGs like a camera folder:
decode, random 64 px crops, Real-ESRGAN degradation, tiny VAE and DINOv2-style encoder, backbone
forward/backward, AdamW, EMA), images/s after warm-up for 1 process x 1 thread (the baseline),
1 process x 2 threads and 2 gloo processes x 1 thread (DDP), plus peak resident memory per
sample (slope of peak RSS over micro-batch sizes). The machine load (``os.getloadavg``) is
printed beside the figures: on a shared machine they scale with it.

GPU (``--gpu``, needs CUDA): the 0.5B backbone's training step (bf16 autocast, AdamW, EMA) on
random latents at 256 and 512 px, with and without gradient checkpointing: images/s and peak
allocated memory per sample. The VAE and DINOv2 encoders are excluded there (their weights are
not shipped); their cost is a forward pass without gradients.

Every configuration runs in a fresh subprocess so peak memory is its own. Ratios are relative
to the first row of each table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.distributed import free_port

HERE = Path(__file__).resolve()


def _setup_env(root: Path) -> None:
    os.environ.update(
        SCREENSR_HOME=str(root / "screensr"), TORCH_HOME=str(root / "torch"), HF_HOME=str(root / "hf"),
        HF_HUB_OFFLINE="1",
    )


# scikit-image's colour photographs (all ship inside the package, no download)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def _prepare(root: Path) -> Path:
    import cv2
    import skimage.data

    from vosr.testing import write_random_tiny_weights

    write_random_tiny_weights()  # the tiny VAE and encoder at the default cache paths
    folder = root / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()
        cv2.imwrite(str(folder / f"{name}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def _tiny_run(args: dict) -> dict:
    import torch

    from vosr.recipes import load_recipe
    from vosr.train import Trainer

    torch.set_num_threads(args["threads"])
    mb = args["micro_batch"]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # cpu_threads: Trainer.fit sets the recipe's thread count, so the measured one goes through it
    cfg = load_recipe("tiny", {"micro_batch": mb, "checkpoint_every": 10**6, "cpu_threads": args["threads"],
                               "stages": [{"resolution": 64, "steps": 1000, "batch_size": mb * world, "lr": 1e-3}]})
    res = Trainer(cfg, [args["data"]], args["out"], max_steps=args["steps"], device="cpu", progress=False).fit()
    warm = 5
    secs = sum(1.0 / h["images_per_s"] * cfg.stages[0].batch_size for h in res.history[warm:])
    n = (len(res.history) - warm) * cfg.stages[0].batch_size
    return {"images_per_s": n / secs}


def _ddp_worker(rank: int, world: int, port: int, args: dict, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    out = _tiny_run(args)
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


def _child(spec: dict) -> dict:
    _setup_env(Path(spec["root"]))
    if spec["kind"] == "tiny":
        if spec.get("procs", 1) > 1:
            import torch.multiprocessing as mp

            port = free_port()
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            mp.spawn(_ddp_worker, args=(spec["procs"], port, spec, q), nprocs=spec["procs"], join=True)
            out = q.get()
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        else:
            out = _tiny_run(spec)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss_mib"] = rss / 1024
        return out
    return _gpu_step(spec)


def _gpu_step(spec: dict) -> dict:
    import torch

    from vosr import create_model

    dev = torch.device("cuda")
    model = create_model("vosr-0.5b", grad_checkpointing=spec["ckpt"]).to(dev).train()
    ema = create_model("vosr-0.5b").to(dev).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)
    b, lat = spec["batch"], spec["res"] // 8
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(spec["steps"]):
        x = torch.randn(b, 8, lat, lat, device=dev)
        sem = torch.randn(b, 1024, 768, device=dev)
        t = torch.rand(b, device=dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            v = model(x, t, sem)
        loss = (v.float() - x[:, 4:]).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1e-4)
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20
    return {"images_per_s": b * len(times) / sum(times), "peak_mib": peak}


def _data_rows(folder: Path, n: int = 60) -> None:
    """Per-sample loading time: the whole photo converted to float then cropped (the former order,
    the baseline) vs the stored integers cropped then converted (TrainImages now); same values."""
    import torch

    from vosr.data import TrainImages, decode_image, random_crop, resolve_sources
    from vosr.degradations import generator

    torch.set_num_threads(1)
    ds = TrainImages(resolve_sources([folder]), 64, seed=0)

    def before(i: int):
        ref = ds.pick(i)
        return random_crop(decode_image(ref.read_bytes(), str(ref)), 64, generator(0, "data-crop", i))

    times = {}
    for name, fn in (("decode, float, crop (before)", before), ("decode, crop, float (now)", ds.__getitem__)):
        fn(0)
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        times[name] = (time.perf_counter() - t0) / n
    base = next(iter(times.values()))
    print(f"\ndata loading per 64 px sample ({n} samples of the photos, 1 thread)")
    print(f"{'order':32s} {'ms/sample':>9s} {'ratio':>6s}")
    for name, t in times.items():
        print(f"{name:32s} {t * 1e3:9.2f} {base / t:6.2f}")


def _run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, str(HERE), "--child", json.dumps(spec)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(spec.get("threads", 1))})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per CPU configuration (5 warm-up)")
    parser.add_argument("--gpu", action="store_true", help="also time the 0.5B backbone on CUDA")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5, 15 min
    with tempfile.TemporaryDirectory(prefix="bench-vosr-train-") as tmp:
        root = Path(tmp)
        _setup_env(root)
        data = _prepare(root)
        base = {"kind": "tiny", "root": str(root), "data": str(data), "steps": args.steps}
        rows = []
        for name, extra in (("1 proc x 1 thread", {"threads": 1, "procs": 1}),
                            ("1 proc x 2 threads", {"threads": 2, "procs": 1}),
                            ("2 procs x 1 thread (DDP gloo)", {"threads": 1, "procs": 2})):
            mb = 8 // extra["procs"]  # the same global batch of 8 in every configuration
            r = _run_child({**base, **extra, "micro_batch": mb, "out": str(root / f"run-{len(rows)}")})
            rows.append((name, r))
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\nVOSR tiny recipe, CPU training throughput on {len(PHOTOS)} scikit-image photos (64 px crops, "
              f"global batch 8, {args.steps} steps, 5 warm-up)\n{os.cpu_count()} cores; load average (1/5/15 min) "
              f"{load_before} before, {load} after the runs")
        print(f"{'configuration':32s} {'images/s':>9s} {'ratio':>6s}")
        for name, r in rows:
            print(f"{name:32s} {r['images_per_s']:9.1f} {r['images_per_s'] / rows[0][1]['images_per_s']:6.2f}")
        _data_rows(data)
        mem = {}
        for mb in (2, 16):
            mem[mb] = _run_child({**base, "threads": 1, "procs": 1, "micro_batch": mb, "steps": 8,
                                  "out": str(root / f"mem-{mb}")})["peak_rss_mib"]
        print(f"\npeak RSS: micro-batch 2 {mem[2]:.0f} MiB, micro-batch 16 {mem[16]:.0f} MiB -> "
              f"{(mem[16] - mem[2]) / 14:.1f} MiB per 64 px sample")
        if args.gpu:
            import torch

            if not torch.cuda.is_available():
                print("\n--gpu: no CUDA device; GPU figures not measured")
                return
            grows = []
            for res, batch in ((256, 32), (512, 8)):
                for ck in (False, True):
                    r = _run_child({"kind": "gpu", "root": str(root), "res": res, "batch": batch, "ckpt": ck, "steps": 10})
                    grows.append((res, batch, ck, r))
            print(f"\nVOSR-0.5B backbone training step on {torch.cuda.get_device_name()} (bf16 autocast)")
            print(f"{'res':>4s} {'batch':>5s} {'grad ckpt':>9s} {'images/s':>9s} {'MiB/sample':>10s} {'ratio':>6s}")
            for res, batch, ck, r in grows:
                print(f"{res:4d} {batch:5d} {str(ck):>9s} {r['images_per_s']:9.1f} {r['peak_mib'] / batch:10.0f} "
                      f"{r['images_per_s'] / grows[0][3]['images_per_s']:6.2f}")


if __name__ == "__main__":
    main()
