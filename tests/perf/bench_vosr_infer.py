"""Inference cost of VOSR: network evaluations, time per step, peak memory of tiled vs untiled.

Run: ``python tests/perf/bench_vosr_infer.py [--quick] [--gpu]``

1. **Network evaluations per image** (``VOSRUpscaler.nfe_last``) for the tiny pipeline with random
   weights: one-step, few-step, 25 guided steps (2 per step), 25 unguided steps (omega = 1), and
   tiled sampling (one pass per tile), with the DINOv2 passes per image (one per tile when
   tiling, never a whole-image pass). Baseline: the one-step row.
2. **Time per sampling step** on this CPU of the ``vosr-tiny`` backbone at the trained grid and
   at 4x the tokens, guided (2B) vs conditional (B) (baseline: conditional, 1 thread).
3. **Full models, analytically** on the ``meta`` device (no weights, no compute): FLOPs of one
   guided step (batch 2) of the 0.5B and 1.4B backbones at 512 px counted by
   ``torch.utils.flop_counter``, per-image totals for 25 guided steps and 1 step, plus the
   DINOv2 / SD2.1 VAE passes, and a *time estimate* at an assumed sustained throughput (stated
   in the table; not a measurement).
4. **Peak memory, tiled vs untiled** as the image grows: the tiny one-step pipeline in a fresh
   subprocess per configuration, peak RSS above the loaded-model baseline (ru_maxrss). Tiled:
   8x8-token latent tiles (the tiny model's trained grid) and 256 px VAE tiles.

``--gpu`` (needs CUDA) times seconds per 512 px image of the 0.5B pipeline with random weights
in the released shapes (SD2.1 VAE + light decoder + DINOv2 ViT-B/14) at 25 guided steps and
1 step, bf16 and SDPA.
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

HERE = Path(__file__).resolve()


def _env(root: Path) -> None:
    os.environ.update(
        SCREENSR_HOME=str(root / "screensr"), TORCH_HOME=str(root / "torch"), HF_HOME=str(root / "hf"),
        HF_HUB_OFFLINE="1",
    )  # fmt: skip


def _table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r) + " |")


def _image(h: int, w: int):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    return (np.stack([yy / h, xx / w, (yy + xx) / (h + w)], -1) * 255).astype(np.uint8)


# --- 1. network evaluations -------------------------------------------------------------------


def bench_nfe(weights: dict) -> None:
    from vosr.config import upscaler_options
    from vosr.pipeline import VOSRUpscaler

    img = _image(32, 48)  # -> 128 x 192 px, latent 16 x 24
    cases = [
        ("one-step, 1 step", weights["checkpoint_os"], {}),
        ("one-step, 4 steps", weights["checkpoint_os"], {"steps": 4}),
        ("multi-step, 25 steps, omega 0.5", weights["checkpoint_ms"], {}),
        ("multi-step, 25 steps, omega 1 (no guidance)", weights["checkpoint_ms"], {"guidance": 1.0}),
        (
            "multi-step, 25 steps, omega 0.5, 16-latent tiles",
            weights["checkpoint_ms"],
            {"tile": 16, "tile_overlap": 8},
        ),
        (
            "multi-step, 25 steps, omega 0.5, 16-latent tiles, 2 tiles per pass",
            weights["checkpoint_ms"],
            {"tile": 16, "tile_overlap": 8, "tile_batch": 2},
        ),
    ]
    rows = []
    base = None
    for label, ck, kw in cases:
        opts = upscaler_options({**kw, "weights_dir": weights["root"]})
        up = VOSRUpscaler(ck, opts.sampling, weights_dir=opts.weights_dir, tile_batch=opts.tile_batch)
        t0 = time.perf_counter()
        up(img, 4, name="nfe.png")
        dt = time.perf_counter() - t0
        base = base or up.nfe_last
        rows.append([label, up.nfe_last, up.nfe_last / base, up.semantic_passes_last, dt])
    _table("Network evaluations per image (tiny pipeline, 128x192 px output)",
           ["configuration", "NFE", "ratio to one-step", "DINOv2 passes", "CPU s/image"], rows)  # fmt: skip


# --- 2. time per step (tiny, CPU) ---------------------------------------------------------------


def bench_tiny_step(quick: bool) -> None:
    import torch

    from vosr import create_model

    torch.manual_seed(0)
    model = create_model("vosr-tiny").eval()
    rows = []
    base = None
    # one thread: the 2 cores of the CI machine are shared, more threads only measure contention
    for threads in (1,):
        torch.set_num_threads(threads)
        for side in (16, 32):  # latent side: trained 8x8 token grid, then 4x the tokens
            for batch, label in ((1, "conditional (B)"), (2, "guided (2B)")):
                x = torch.randn(batch, 8, side, side)
                t = torch.full((batch,), 0.5)
                sem = torch.randn(batch, 16, 64)
                with torch.no_grad():
                    for _ in range(2):
                        model(x, t, sem)
                    n = 5 if quick else 20
                    t0 = time.perf_counter()
                    for _ in range(n):
                        model(x, t, sem)
                ms = (time.perf_counter() - t0) / n * 1000
                base = base or ms
                rows.append([threads, f"{side * 8} px ({(side // 2) ** 2} tokens)", label, ms, ms / base])
    _table("vosr-tiny backbone, time per sampling step on this CPU",
           ["threads", "image", "step", "ms/step", "ratio"], rows)  # fmt: skip


# --- 3. full models on meta -------------------------------------------------------------------


def _flops(fn) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn()
    return float(fc.get_total_flops())


def bench_full_analytic(assumed_tflops: float) -> None:
    import torch

    from vosr import create_model
    from vosr.semantic import build_semantic_encoder

    rows = []
    with torch.device("meta"):
        encoders = {
            "dinov2_vitb14": build_semantic_encoder("dinov2_vitb14", 8, 448),
            "dinov2_vitl14": build_semantic_encoder("dinov2_vitl14", 17, 448),
        }
    img448 = torch.empty(1, 3, 448, 448, device="meta")
    enc_flops = {k: _flops(lambda e=e: e(img448)) for k, e in encoders.items()}
    vae_flops = {"sd21": _sd21_vae_flops(), "qwen-image": _qwen_vae_flops()}
    for name in ("vosr-0.5b", "vosr-1.4b"):
        with torch.device("meta"):
            model = create_model(name)
            C, E = model.config.latent_channels, model.config.semantic_dim
            x2, x1 = torch.empty(2, 2 * C, 64, 64), torch.empty(1, 2 * C, 64, 64)
            s2, s1 = torch.empty(2, 1024, E), torch.empty(1, 1024, E)
            t2, t1 = torch.empty(2), torch.empty(1)
        params = sum(p.numel() for p in model.parameters())
        guided = _flops(lambda m=model, x=x2, t=t2, s=s2: m(x, t, s))
        single = _flops(lambda m=model, x=x1, t=t1, s=s1: m(x, t, s))
        enc = enc_flops[model.config.semantic_encoder]
        vae = vae_flops[model.config.autoencoder]
        conds = enc + vae
        ms25 = 25 * guided + conds
        os1 = single + conds
        rows.append([name, f"{params / 1e6:.1f} M", guided / 1e12, single / 1e12, enc / 1e12,
                     vae / 1e12, ms25 / 1e12, os1 / 1e12,
                     ms25 / (assumed_tflops * 1e12), os1 / (assumed_tflops * 1e12)])  # fmt: skip
    _table(
        f"Full models at 512 px, analytic (meta device). Estimated s/image assumes {assumed_tflops:g} "
        "TFLOP/s sustained (NOT measured). VAE column: encode + full decode at 512 px (SD2.1 VAE for "
        "0.5B; the light decoder is cheaper; Qwen-Image VAE on one frame for 1.4B)",
        ["model", "params", "TFLOP guided step (2B)", "TFLOP cond. step (B)", "TFLOP DINOv2",
         "TFLOP VAE", "TFLOP/image 25 guided", "TFLOP/image 1 step", "est. s 25 steps", "est. s 1 step"],
        rows,
    )  # fmt: skip


def _qwen_vae_flops() -> float:
    import torch
    from diffusers import AutoencoderKLQwenImage

    with torch.device("meta"):
        vae = AutoencoderKLQwenImage()  # the released 2-D folder's sizes are the class defaults
        img = torch.empty(1, 3, 1, 512, 512)
        lat = torch.empty(1, 16, 1, 64, 64)
    return _flops(lambda: vae._encode(img)) + _flops(lambda: vae.decode(lat))


def _sd21_vae_flops() -> float:
    import torch
    from diffusers import AutoencoderKL

    # SD2.1 VAE architecture (stabilityai/stable-diffusion-2-1-base vae/config.json)
    with torch.device("meta"):
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4, sample_size=768,
        )  # fmt: skip
        img = torch.empty(1, 3, 512, 512)
        lat = torch.empty(1, 4, 64, 64)
    return _flops(lambda: vae.encode(img)) + _flops(lambda: vae.decode(lat))


# --- 4. peak memory tiled vs untiled ------------------------------------------------------------


def _memory_child(spec: dict) -> None:
    import torch

    from vosr.config import SamplingConfig
    from vosr.pipeline import VOSRUpscaler

    torch.set_num_threads(1)
    kw = {"tile": 16, "tile_overlap": 4, "vae_tile": 256} if spec["tiled"] else {}
    up = VOSRUpscaler(spec["checkpoint"], SamplingConfig(**kw), weights_dir=spec["root"])
    up(_image(16, 16), 4, name="warm")  # warm-up: allocator pools, lazy imports
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    up(_image(spec["lr"], spec["lr"]), 4, name="m")
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"delta_mb": (peak - base) / 1024, "seconds": dt, "nfe": up.nfe_last}))


def bench_memory(weights: dict, sizes: list[int]) -> None:
    rows = []
    for lr in sizes:
        res = {}
        for tiled in (False, True):
            spec = {
                "checkpoint": str(weights["checkpoint_os"]),
                "root": str(weights["root"]),
                "lr": lr,
                "tiled": tiled,
            }
            out = subprocess.run(
                [sys.executable, str(HERE), "--child", json.dumps(spec)],
                capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
            )  # fmt: skip
            res[tiled] = json.loads(out.stdout.strip().splitlines()[-1])
        sr = lr * 4
        rows.append([f"{sr}x{sr} ({(sr // 16) ** 2} tokens)", res[False]["delta_mb"], res[True]["delta_mb"],
                     res[True]["delta_mb"] / max(res[False]["delta_mb"], 1e-9), res[True]["nfe"],
                     res[False]["seconds"], res[True]["seconds"]])  # fmt: skip
    _table(
        "Peak memory above the loaded pipeline, tiny one-step pipeline, CPU (fresh process each; "
        "tiled = 8x8-token latent tiles (the tiny trained grid) + 256 px VAE tiles)",
        ["output", "untiled MB", "tiled MB", "tiled / untiled", "tiled NFE", "untiled s", "tiled s"],
        rows,
    )


# --- GPU ----------------------------------------------------------------------------------------


def bench_gpu(root: Path) -> None:
    import torch

    from vosr.autoencoders import build_light_decoder, import_diffusers
    from vosr.checkpoints import save_checkpoint
    from vosr.model import create_model
    from vosr.pipeline import VOSRUpscaler
    from vosr.semantic import build_semantic_encoder

    wd = root / "gpu-weights"
    wd.mkdir(parents=True, exist_ok=True)
    AutoencoderKL = import_diffusers().AutoencoderKL
    AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                  up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4,
                  sample_size=768).save_pretrained(wd / "sd21-vae")  # fmt: skip
    light = {
        "in_channels": 4,
        "out_channels": 3,
        "block_out_channels": [64, 128, 256, 256],
        "layers_per_block": 2,
    }
    torch.save(
        {"config": light, "model_state_dict": build_light_decoder(light).state_dict()},
        wd / "sd21_lwdecoder.pth",
    )
    vit = build_semantic_encoder("dinov2_vitb14", 8, 518).vit
    state = {k: v for k, v in vit.state_dict().items() if not k.startswith("head")}
    state["mask_token"] = torch.zeros(1, 768)
    torch.save(state, wd / "dinov2_vitb14_pretrain.pth")
    rows = []
    for one_step in (False, True):
        path = save_checkpoint(
            create_model("vosr-0.5b", one_step=one_step), wd / f"ck{int(one_step)}.safetensors"
        )
        up = VOSRUpscaler(path, device="cuda", dtype="bf16", weights_dir=wd)
        img = _image(128, 128)
        up(img, 4, name="warm")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(3):
            up(img, 4, name=f"i{i}")
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / 3
        rows.append(["1 step" if one_step else "25 guided steps", up.nfe_last, dt,
                     torch.cuda.max_memory_allocated() / 2**30])  # fmt: skip
    _table(f"VOSR-0.5B, 512 px output, bf16 + SDPA on {torch.cuda.get_device_name()}",
           ["sampling", "NFE", "s/image", "peak GiB"], rows)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and smaller images")
    ap.add_argument("--gpu", action="store_true", help="also time the 0.5B pipeline on CUDA")
    ap.add_argument("--assumed-tflops", type=float, default=400.0,
                    help="sustained bf16 TFLOP/s for the analytic estimate (default 400, ~40%% of an H100's dense peak)")  # fmt: skip
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _memory_child(json.loads(args.child))
        return
    root = Path(tempfile.mkdtemp(prefix="bench-vosr-infer-"))
    _env(root)
    from vosr.testing import write_random_tiny_weights

    weights = write_random_tiny_weights(root / "w")
    weights["root"] = root / "w"
    import torch

    print(f"# VOSR inference benchmark (torch {torch.__version__}, {os.cpu_count()} CPUs)")
    bench_nfe(weights)
    bench_tiny_step(args.quick)
    bench_full_analytic(args.assumed_tflops)
    bench_memory(weights, [64, 128] if args.quick else [64, 128, 256, 384])
    if args.gpu:
        if not torch.cuda.is_available():
            print("\n(--gpu: no CUDA device; GPU figures not measured)")
        else:
            bench_gpu(root)
    else:
        print("\nGPU seconds per 512 px image: not measured in this run (pass --gpu on a CUDA machine).")


if __name__ == "__main__":
    main()
