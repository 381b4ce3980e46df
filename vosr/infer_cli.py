"""``screensr vosr infer``: super-resolve images with a VOSR checkpoint.

Only the standard library and ``core.errors`` are imported at module level; the handler imports
torch and the model. The sampling options are gathered into one flat mapping and typed by
``vosr.config.upscaler_options`` (the same loader as ``vosr-0.5b-ms@steps=8`` method specs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.errors import MissingFileError, UserError

EPILOG = """examples:
  screensr vosr infer -c vosr-0.5b-os -i lr/ -o sr/ -u 4
  screensr vosr infer -c vosr-0.5b-ms -i lr/ -o sr/ --preset realsr          # omega -0.5
  screensr vosr infer -c ~/.cache/screensr/vosr/VOSR_0.5B_ms -i photo.png -o sr/ --steps 25 --guidance 0.5
  screensr vosr infer -c vosr-0.5b-ms -i lr/ -o sr/ --noise release         # the released script's draws
  screensr vosr infer -c runs/tiny/checkpoints/ema_model.safetensors -i lr/ -o sr/ --tile 64 --vae-tile 1024
  screensr vosr infer -c vosr-1.4b-os -i lr/ -o sr/ --weights-dir /media/usb/vosr --device cuda --dtype bf16

Defaults reproduce the released inference scripts (inference_vosr.py, inference_vosr_onestep.py)
where they define the outputs: 8-bit conversion by truncation with the colour fix applied to the
8-bit image (--quantize release), the released AdaIN / "wavelet" formulas, the released tile layout
(--tile-layout release) and weak strength 0.15. They differ from the released CLI in three places:
guidance defaults to 0.5 (the released README's practical value; the released script's own
--cfg_scale default is 2.0), each image's noise is seeded from (seed, file name) so outputs do not
depend on which files are processed together (--noise release replays the released single global
generator, seed 42), and any image size works.

CHECKPOINT is a release tag (vosr-0.5b-ms, vosr-0.5b-os, vosr-1.4b-ms, vosr-1.4b-os, looked up under
$SCREENSR_HOME/vosr or --weights-dir), a run folder (args.json + checkpoints/ema_model.safetensors)
or a .safetensors file. Outputs keep each input's file name (as PNG); existing outputs are skipped
unless --overwrite. Inputs must be 8-bit RGB (16-bit, grayscale and alpha images are refused unless
--convert-inputs). `screensr weights --group vosr` lists the weight files and where they go.
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
        "--guidance",
        type=float,
        help="omega of partial-condition guidance (multi-step). Default 0.5, the released README's "
        "practical default; the released script's --cfg_scale default, 2.0, differs from its README",
    )
    p.add_argument(
        "--preset",
        choices=["screensr", "realsr"],
        help="the paper's benchmark guidance: screensr = 0.5, realsr = -0.5 (an explicit --guidance wins)",
    )
    p.add_argument("--weak-strength", type=float, help="w of the partial condition (default 0.15)")
    p.add_argument(
        "--tile", type=int, help="latent tile side (image px / 8; the release's --tile_size T is T/8)"
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        help="latent pixels shared by tiles; release layout: at least tile/8, default the released "
        "4 px (multi-step) / 32 px (one-step) / 8; rect layout: default min(16, tile/4)",
    )
    p.add_argument(
        "--tile-layout",
        choices=["release", "rect"],
        default="release",
        help="release (default): square tiles of min(tile, h, w) as released; rect: min(tile, h) x min(tile, w)",
    )
    p.add_argument("--tile-batch", type=int, default=1, help="latent tiles per network pass (GPU speed)")
    p.add_argument("--vae-tile", type=int, help="image-space tile side for the autoencoder, e.g. 1024")
    p.add_argument(
        "--color-fix",
        choices=["adain", "wavelet", "none"],
        default="adain",
        help="adain (default; mean and unbiased std + 1e-5 per channel) or wavelet (the released "
        "Gaussian sigma-5 low/high split), against the bicubic image",
    )
    p.add_argument(
        "--quantize",
        choices=["release", "round"],
        default="release",
        help="release (default): truncate to 8 bits, fix colours on the 8-bit image, truncate again, "
        "as released; round: fix in float and round once",
    )
    p.add_argument(
        "--noise",
        choices=["per-image", "release"],
        default="per-image",
        help="per-image (default): noise from (seed, file name); release: one generator seeded once "
        "(seed 42 unless --seed) drawing posterior sample then initial noise per file in sorted order, "
        "as the released script (its draws on a GPU; on a CPU-only machine the released script's "
        "model construction consumes its generator first)",
    )
    p.add_argument("--decoder", choices=["default", "light", "vae"], default="default",
                   help="SD2.1 checkpoints: light decoder (default, as released) or the full VAE decoder")  # fmt: skip
    p.add_argument(
        "--posterior",
        choices=["sample", "mean"],
        default="sample",
        help="structural latent from a VAE posterior sample (default, as released) or its mean",
    )
    p.add_argument("--seed", type=int, default=None, help="base seed (default 0; 42 with --noise release)")
    p.add_argument(
        "--convert-inputs",
        action="store_true",
        help="convert 16-bit (rounded to 8 bits), grayscale (replicated) and alpha (dropped) inputs "
        "to 8-bit RGB, with a note per file, instead of refusing them",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="network precision")
    p.add_argument("--weights-dir", type=Path, help="folder searched first for every weight file")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.set_defaults(func=run)


def list_inputs(path: Path) -> list[Path]:
    """The images to process: ``path`` itself or the image files directly inside it, sorted."""
    if not path.exists():
        raise MissingFileError(f"input {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    return files


def _bit_depth(path: Path, im: Any) -> int:
    """Bits per channel as stored (``core.imageformat``: Pillow hides 16-bit PNG / TIFF data)."""
    from core.imageformat import stored_bit_depth

    with open(path, "rb") as f:
        return stored_bit_depth(im, f.read(25))


def _convert_to_rgb8(path: Path, im: Any, depth: int) -> tuple[Any, list[str]]:
    """An explicit 8-bit RGB version of a 16-bit / grayscale / alpha image, and what was done."""
    import numpy as np

    from vosr.pipeline import ImageInputError

    done = []
    if depth > 8:
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # keeps all 16 bits (Pillow does not)
        if raw is None or raw.dtype != np.uint16:
            raise ImageInputError(f"{path}: cannot read its {depth}-bit data; convert it to 8-bit RGB first")
        arr = ((raw.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # round v * 255 / 65535
        done.append(f"{depth}-bit -> 8-bit (rounded)")
        if arr.ndim == 3:  # OpenCV's BGR(A) -> RGB(A)
            arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]
    else:
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode not in ("RGB", "RGBA", "L", "LA", "1"):
            raise ImageInputError(
                f"{path}: image mode {mode!r} cannot be converted to 8-bit RGB; convert it first"
            )
        arr = np.array(im.convert("L") if im.mode == "1" else im)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[..., :-1]
        done.append("alpha channel dropped (colours as stored, not composited)")
    if arr.ndim == 2 or arr.shape[2] == 1:
        arr = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2)
        done.append("grayscale -> RGB (channel replicated)")
    return np.ascontiguousarray(arr), done


def read_rgb8(path: Path, convert: bool = False) -> Any:
    """An 8-bit RGB array (H, W, 3) from ``path``.

    16-bit, grayscale and alpha images raise an error naming the file and the fix (the benchmark
    refuses them too), unless ``convert``: then they are converted explicitly (16-bit rounded to
    8 bits, gray replicated, alpha dropped) and a note naming the file is printed to stderr.
    A palette image without transparency is expanded losslessly. The pixel limit
    (``core.imagelimits``) is checked on the header before anything is decoded.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from core.imagelimits import check_image_pixels
    from vosr.pipeline import ImageInputError

    check_image_pixels(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            depth = _bit_depth(path, im)
            if mode == "RGB" and depth == 8:
                return np.array(im)
            if mode == "P" and "transparency" not in im.info:
                return np.array(im.convert("RGB"))  # a palette is lossless to expand
            if convert:
                arr, done = _convert_to_rgb8(path, im, depth)
                print(f"note: {path}: converted to 8-bit RGB: {'; '.join(done)}", file=sys.stderr)
                return arr
            if depth > 8:
                kind = f"{depth}-bit per channel"
            elif mode in ("L", "1", "I", "F") or mode.startswith("I;16"):
                kind = "grayscale"
            elif mode in ("RGBA", "LA", "PA", "P"):
                kind = "has an alpha channel"
            else:
                kind = "not 8-bit RGB"
            raise ImageInputError(
                f"{path}: image mode {mode!r} ({kind}); VOSR takes 8-bit RGB: pass --convert-inputs to "
                "convert it explicitly, or convert it first, e.g. "
                "python -c \"from PIL import Image; Image.open('in').convert('RGB').save('out.png')\""
            )
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageInputError(f"{path}: not a readable image ({exc}); re-export or remove it") from exc


def image_hw(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header (the pixel limit is enforced)."""
    from core.imagelimits import check_image_pixels

    width, height = check_image_pixels(path)
    return height, width


def write_png_atomic(array: Any, path: Path) -> None:
    """Write ``array`` (H, W, 3 uint8) as PNG atomically (``core.atomic``)."""
    from PIL import Image

    from core.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flat upscaler options given on the command line (unset flags left out)."""
    given = {
        "steps": args.steps, "guidance": args.guidance, "weak_strength": args.weak_strength, "preset": args.preset,
        "tile": args.tile, "tile_overlap": args.tile_overlap, "tile_layout": args.tile_layout,
        "vae_tile": args.vae_tile, "color_fix": args.color_fix, "quantize": args.quantize, "noise": args.noise,
        "seed": args.seed, "sample_posterior": args.posterior == "sample", "dtype": args.dtype,
        "weights_dir": args.weights_dir, "decoder": args.decoder, "tile_batch": args.tile_batch,
    }  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    """Handler of ``screensr vosr infer``."""
    import json

    import torch
    from tqdm.auto import tqdm

    from core.atomic import atomic_write_text
    from vosr.config import upscaler_options
    from vosr.pipeline import VOSRUpscaler

    # typed before anything is read or loaded: a bad value fails at once, naming the option
    opts = upscaler_options(sampling_options(args), where="screensr vosr infer")
    inputs = list_inputs(args.input)
    outputs = {p: args.output / f"{p.stem}.png" for p in inputs}
    todo = [p for p in inputs if args.overwrite or not outputs[p].exists()]
    if len(todo) < len(inputs):
        print(f"{len(inputs) - len(todo)} output(s) exist in {args.output}, skipped (--overwrite recomputes)")
    if not todo:
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    upscaler = VOSRUpscaler(
        args.checkpoint, opts.sampling, device=device, dtype=opts.dtype, weights_dir=opts.weights_dir,
        decoder=opts.decoder, tile_batch=opts.tile_batch, progress=len(todo) == 1,
    )  # fmt: skip
    args.output.mkdir(parents=True, exist_ok=True)
    # the settings that produced these outputs, saved next to them; a folder never mixes settings
    settings = json.loads(json.dumps({**upscaler.settings, "upscale": args.upscale}))
    settings_path = args.output / SETTINGS_FILE
    if settings_path.exists() and not args.overwrite and len(todo) < len(inputs):
        previous = json.loads(settings_path.read_text())
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise UserError(
                f"{args.output} holds outputs made with other settings (differing: {', '.join(changed)}); "
                "write to another folder or pass --overwrite to recompute them all"
            )
    atomic_write_text(settings_path, json.dumps(settings, indent=2, sort_keys=True))
    release_noise = upscaler.sampling.noise == "release"
    pending = set(todo)
    # release noise: every file in sorted order draws from the one generator; finished ones are
    # skipped by drawing what they would have drawn, so the rest get the released script's noise
    order = inputs if release_noise else todo
    for path in tqdm(order, desc="vosr infer", unit="img", disable=len(todo) == 1, file=sys.stderr):
        if path not in pending:
            upscaler.skip_noise(image_hw(path), args.upscale)
            continue
        image = read_rgb8(path, convert=args.convert_inputs)
        sr = upscaler(image, args.upscale, name=path.name)
        write_png_atomic(sr, outputs[path])
    print(f"wrote {len(todo)} image(s) to {args.output} ({upscaler.nfe_last} network evaluations per image)")
    return 0
