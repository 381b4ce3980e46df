"""``screensr vosr infer``: super-resolve images with a VOSR checkpoint.

Only the standard library is imported at module level; the handler imports torch and the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  screensr vosr infer -c vosr-0.5b-os -i lr/ -o sr/ -u 4
  screensr vosr infer -c ~/.cache/screensr/vosr/VOSR_0.5B_ms -i photo.png -o sr/ --steps 25 --guidance 0.5
  screensr vosr infer -c runs/tiny/checkpoints/ema_model.safetensors -i lr/ -o sr/ --tile 64 --vae-tile 1024
  screensr vosr infer -c vosr-1.4b-os -i lr/ -o sr/ --weights-dir /media/usb/vosr --device cuda --dtype bf16

CHECKPOINT is a release tag (vosr-0.5b-ms, vosr-0.5b-os, vosr-1.4b-ms, vosr-1.4b-os, looked up under
$SCREENSR_HOME/vosr or --weights-dir), a run folder (args.json + checkpoints/ema_model.safetensors)
or a .safetensors file. Outputs keep each input's file name (as PNG); existing outputs are skipped
unless --overwrite. `screensr weights --group vosr` lists the weight files and where they go.
"""

SETTINGS_FILE = "vosr_infer_settings.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``infer`` verb to the ``screensr vosr`` sub-parsers."""
    p = subparsers.add_parser(
        "infer",
        help="super-resolve images with a VOSR checkpoint",
        description="Super-resolve an image or a folder of images with a VOSR checkpoint.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--checkpoint", required=True, help="release tag, run folder or .safetensors file")
    p.add_argument("-i", "--input", required=True, type=Path, help="an image or a folder of images")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("-u", "--upscale", type=float, default=4, help="upscaling factor (default 4)")
    p.add_argument("--steps", type=int, help="sampling steps (default: 25 multi-step, 1 one-step)")
    p.add_argument(
        "--guidance", type=float, help="omega of partial-condition guidance (multi-step; default 0.5)"
    )
    p.add_argument("--weak-strength", type=float, help="w of the partial condition (default 0.15)")
    p.add_argument("--tile", type=int, help="latent tile side (image px / 8) for large images, e.g. 64")
    p.add_argument("--tile-overlap", type=int, help="latent pixels shared by tiles (default min(16, tile/4))")
    p.add_argument("--tile-batch", type=int, default=1, help="latent tiles per network pass (GPU speed)")
    p.add_argument("--vae-tile", type=int, help="image-space tile side for the autoencoder, e.g. 1024")
    p.add_argument("--color-fix", choices=["adain", "wavelet", "none"], default="adain", help="default adain")
    p.add_argument("--decoder", choices=["default", "light", "vae"], default="default",
                   help="SD2.1 checkpoints: light decoder (default, as released) or the full VAE decoder")  # fmt: skip
    p.add_argument(
        "--posterior",
        choices=["sample", "mean"],
        default="sample",
        help="structural latent from a VAE posterior sample (default, as released) or its mean",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each image's noise also depends on its name"
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="network precision")
    p.add_argument("--weights-dir", type=Path, help="folder searched first for every weight file")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.set_defaults(func=run)


def list_inputs(path: Path) -> list[Path]:
    """The images to process: ``path`` itself or the image files directly inside it, sorted."""
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return files


def read_rgb8(path: Path):
    """An 8-bit RGB array from ``path``; other modes raise an error naming the file and the fix."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P" and "transparency" not in im.info:
                im = im.convert("RGB")  # a palette is lossless to expand
            elif mode != "RGB":
                raise ValueError(
                    f"{path}: image mode {mode!r} ({'grayscale' if mode in ('L', 'I', 'I;16', 'F') else 'not 8-bit RGB'}); "
                    "VOSR takes 8-bit RGB: convert it first, e.g. "
                    "python -c \"from PIL import Image; Image.open('in').convert('RGB').save('out.png')\""
                )
            return np.array(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc}); re-export or remove it") from exc


def write_png_atomic(array, path: Path) -> None:
    """Write ``array`` (H, W, 3 uint8) as PNG via a temporary file and ``os.replace``."""
    import os
    import tempfile

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    from tqdm.auto import tqdm

    from vosr.pipeline import VOSRUpscaler

    inputs = list_inputs(args.input)
    outputs = {p: args.output / f"{p.stem}.png" for p in inputs}
    todo = [p for p in inputs if args.overwrite or not outputs[p].exists()]
    if len(todo) < len(inputs):
        print(f"{len(inputs) - len(todo)} output(s) exist in {args.output}, skipped (--overwrite recomputes)")
    if not todo:
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    upscaler = VOSRUpscaler(
        args.checkpoint,
        device=device,
        steps=args.steps,
        guidance=args.guidance,
        weak_strength=args.weak_strength,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        vae_tile=args.vae_tile,
        color_fix=args.color_fix,
        seed=args.seed,
        weights_dir=args.weights_dir,
        decoder=args.decoder,
        dtype=args.dtype,
        progress=len(todo) == 1,
        sample_posterior=args.posterior == "sample",
        tile_batch=args.tile_batch,
    )
    args.output.mkdir(parents=True, exist_ok=True)
    # the settings that produced these outputs, saved next to them; a folder never mixes settings
    settings = json.loads(json.dumps({**upscaler.settings, "upscale": args.upscale}))
    settings_path = args.output / SETTINGS_FILE
    if settings_path.exists() and not args.overwrite and len(todo) < len(inputs):
        previous = json.loads(settings_path.read_text())
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ValueError(
                f"{args.output} holds outputs made with other settings (differing: {', '.join(changed)}); "
                "write to another folder or pass --overwrite to recompute them all"
            )
    write_text_atomic(json.dumps(settings, indent=2, sort_keys=True), settings_path)
    for path in tqdm(todo, desc="vosr infer", unit="img", disable=len(todo) == 1, file=sys.stderr):
        image = read_rgb8(path)
        sr = upscaler(image, args.upscale, name=path.name)
        write_png_atomic(sr, outputs[path])
    print(f"wrote {len(todo)} image(s) to {args.output} ({upscaler.nfe_last} network evaluations per image)")
    return 0
