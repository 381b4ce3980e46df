"""``screensr capture ...``: command-line verbs of the ``data_capture`` package.

Only the standard library is imported at module level (so ``--help`` is instant); handlers import
what they need.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class _Fmt(argparse.RawDescriptionHelpFormatter):
    pass


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add this group's verbs to ``parser`` (the ``screensr capture`` parser)."""
    parser.set_defaults(_parser=parser)
    sub = parser.add_subparsers(title="verbs", metavar="VERB")

    p = sub.add_parser("canvas", help="place each source on a white canvas with four ArUco markers",
                       description="Write <stem>.png and <stem>.layout.json per source image. Each canvas gets its "
                       "own four marker ids once, recorded in its layout; a rerun (e.g. with more sources) keeps every "
                       "existing canvas byte for byte and gives new ones ids no canvas of the folder uses.",
                       formatter_class=_Fmt,
                       epilog="example:\n  screensr capture canvas sources/ --out canvases/ --screen 4k\n")
    p.add_argument("sources", type=Path, help="folder of source images")
    p.add_argument("--out", type=Path, required=True, help="output folder for canvases and layouts")
    p.add_argument("--screen", default=None, help="canvas size preset: 4k, qhd, fhd, ipad (default 4k)")
    p.add_argument("--size", default=None, help="canvas size WxH in px, e.g. 3840x2160 (overrides --screen)")
    p.add_argument("--dictionary", default=None,
                   help="ArUco dictionary (default DICT_4X4_50: 12 canvases; DICT_4X4_100/250/1000 extend a folder)")
    p.add_argument("--marker-fraction", type=float, default=None, help="marker side / shorter canvas side (0.06)")
    p.add_argument("--quiet-modules", type=float, default=None, help="white quiet zone in marker modules (2)")
    p.add_argument("--margin-fraction", type=float, default=None, help="gap to the canvas edge (0.02)")
    p.add_argument("--display-scale", type=float, default=None, help="source px -> canvas px (0 = fit)")
    p.add_argument("--config", type=Path, default=None, help="JSON/YAML CanvasConfig")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_canvas)

    p = sub.add_parser("show", help="show canvases full-screen in order for capture",
                       description="Full-screen slideshow (OpenCV window). Keys: space/right/n next, left/p back, "
                       "q/Esc quit. Name each photo like the canvas on screen (the title shows the stem).",
                       formatter_class=_Fmt, epilog="example:\n  screensr capture show canvases/\n  screensr capture show canvases/ --list\n")
    p.add_argument("canvases", type=Path)
    p.add_argument("--start", default=None, help="stem to start from")
    p.add_argument("--list", action="store_true", help="print the capture order and exit (no window)")
    p.set_defaults(func=_show)

    p = sub.add_parser("simulate", help="render simulated phone photos of canvases with ground truth",
                       description="Write <stem>.jpg (or .png for the clean preset) and <stem>.truth.json per canvas.",
                       formatter_class=_Fmt,
                       epilog="example:\n  screensr capture simulate canvases/ --out photos/ --preset typical --seed 0\n")
    p.add_argument("canvases", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--preset", default="typical", help="clean, mild, typical or hard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photo-size", default=None, help="photo WxH, e.g. 4032x3024 (the preset default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a SimConfig field (JSON value)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("align", help="register photos onto their source plane (no dataset)",
                       description="Detect, register, warp and colour-fix photos; write <stem>.aligned.png "
                       "(source resolution, before the colour fix), <stem>.lr.png and <stem>.json.",
                       formatter_class=_Fmt,
                       epilog="example:\n  screensr capture align photos/IMG_0001.jpg --canvases canvases/ --sources sources/ --out aligned/ --scale 4\n")
    p.add_argument("photos", type=Path, nargs="+", help="photo files or folders; matched to canvases by stem")
    p.add_argument("--canvases", type=Path, required=True)
    p.add_argument("--sources", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--config", type=Path, default=None, help="JSON/YAML BuildConfig (pair settings)")
    p.set_defaults(func=_align)

    p = sub.add_parser("build", help="sources + canvases + photos -> paired dataset (hr/, lr/, manifest)",
                       description="Build or resume a ScreenSR paired dataset folder with a QA report.",
                       formatter_class=_Fmt,
                       epilog="example:\n  screensr capture build --sources sources/ --canvases canvases/ --photos photos/ "
                       "--out dataset/ --scale 4\n  screensr capture build ... --export-hf hf/ --export-wds shards/\n")
    p.add_argument("--sources", type=Path, required=True)
    p.add_argument("--canvases", type=Path, required=True)
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scale", type=int, default=None, help="LR scale (default 4)")
    p.add_argument("--colour", dest="colour_method", default=None, help="wavelet (default), adain or none")
    p.add_argument("--levels", dest="colour_levels", type=int, default=None, help="wavelet levels (5)")
    p.add_argument("--name", default=None, help="dataset name (default: the folder name)")
    p.add_argument("--keep-aligned", action="store_true", default=None, help="also write aligned/<id>.png")
    p.add_argument("--screen-model", dest="screen", default=None, help="screen the canvases were shown on (recorded)")
    p.add_argument("--config", type=Path, default=None, help="JSON/YAML BuildConfig")
    p.add_argument("--export-hf", type=Path, default=None, help="also write a datasets ImageFolder here")
    p.add_argument("--export-wds", type=Path, default=None, help="also write WebDataset shards here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_build)

    p = sub.add_parser("export", help="export a built dataset as a datasets ImageFolder and/or WebDataset shards",
                       formatter_class=_Fmt,
                       epilog="example:\n  screensr capture export dataset/ --hf hf/ --wds shards/\n"
                       "  python -c \"import datasets; print(datasets.load_dataset('imagefolder', data_dir='hf'))\"\n")
    p.add_argument("dataset", type=Path)
    p.add_argument("--hf", type=Path, default=None)
    p.add_argument("--wds", type=Path, default=None)
    p.set_defaults(func=_export)


def _size(text: str) -> tuple[int, int]:
    from core.errors import ConfigError

    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise ConfigError(f"size '{text}' is not WxH (e.g. 3840x2160)") from None


def _canvas(args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.errors import ConfigError, did_you_mean
    from data_capture.canvas import SCREEN_SIZES, CanvasConfig, make_canvases

    over: dict = {"dictionary": args.dictionary, "marker_fraction": args.marker_fraction,
                  "quiet_modules": args.quiet_modules, "margin_fraction": args.margin_fraction,
                  "display_scale": args.display_scale}
    if args.screen:
        if args.screen not in SCREEN_SIZES:
            raise ConfigError(f"screen '{args.screen}' unknown{did_you_mean(args.screen, SCREEN_SIZES)}; "
                              f"choose {', '.join(SCREEN_SIZES)} or pass --size WxH")
        over["width"], over["height"] = SCREEN_SIZES[args.screen]
    if args.size:
        over["width"], over["height"] = _size(args.size)
    cfg = load_config(CanvasConfig, args.config, overrides=over)
    before = {p.name for p in args.out.glob("*.layout.json")} if args.out.is_dir() else set()
    paths = make_canvases(args.sources, args.out, cfg, progress=not args.no_progress)
    new = [p for p in paths if p.name not in before]
    print(f"{len(paths)} canvases ({cfg.width}x{cfg.height}) in {args.out}: {len(new)} new, "
          f"{len(paths) - len(new)} kept unchanged")
    return 0


def _show(args: argparse.Namespace) -> int:
    from data_capture.show import capture_order, slideshow

    order = capture_order(args.canvases, start=args.start)
    if args.list:
        for i, p in enumerate(order, 1):
            print(f"{i:4d}  {p.stem}")
        return 0
    slideshow(order)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from data_capture.simulate import simulate_folder

    over = {}
    for kv in args.set:
        if "=" not in kv:
            raise ConfigError(f"--set '{kv}' is not KEY=VALUE (e.g. --set jpeg_quality=90)")
        k, v = kv.split("=", 1)
        try:
            over[k] = json.loads(v)
        except json.JSONDecodeError:
            over[k] = v
    if args.photo_size:
        over["photo_width"], over["photo_height"] = _size(args.photo_size)
    photos = simulate_folder(args.canvases, args.out, preset=args.preset, seed=args.seed, overrides=over,
                             progress=not args.no_progress)
    print(f"{len(photos)} simulated photos in {args.out}")
    return 0


def _align(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.errors import UserError
    from data_capture.build import load_build_config
    from data_capture.canvas import CanvasSet, load_layout
    from data_capture.imageio import list_images, read_image, write_image, write_json
    from data_capture.pair import load_truth, process_pair

    cfg = load_build_config(args.config, scale=args.scale)
    photos: list[Path] = []
    for p in args.photos:
        photos.extend(list_images(p) if p.is_dir() else [p])
    canvases = CanvasSet.read(args.canvases)
    n_ok = 0
    for ph in tqdm(photos, desc="align", unit="photo"):
        lpath = args.canvases / f"{ph.stem}.layout.json"
        if not lpath.is_file():
            print(f"{ph.name}: rejected: no canvas layout {lpath}")
            continue
        try:  # a bad photo (corrupt, too large, wrong source) is reported and the others go on
            layout = load_layout(lpath)
            photo = read_image(ph, role="photo", exif=True)
            src = read_image(args.sources / layout.source, role="source")
        except (UserError, OSError) as exc:
            print(f"{ph.name}: rejected: {exc}")
            continue
        res = process_pair(photo.rgb, src.rgb, layout, cfg.pair, load_truth(ph), want_aligned=True,
                           canvases=canvases, stem=ph.stem)
        rec = {"id": ph.stem, "photo": ph.name, **res.record, "orientation": photo.orientation, "exif": photo.exif}
        if res.aligned is not None:
            write_image(args.out / f"{ph.stem}.aligned.png", res.aligned)
        if res.lr is not None:
            write_image(args.out / f"{ph.stem}.lr.png", res.lr)
        write_json(args.out / f"{ph.stem}.json", rec)
        n_ok += rec["status"] == "ok"
        print(f"{ph.name}: {rec['status']}" + (f": {rec['reason']}" if rec.get("reason") else ""))
    print(f"{n_ok}/{len(photos)} aligned into {args.out}")
    return 0 if n_ok == len(photos) else 1


def _build(args: argparse.Namespace) -> int:
    from data_capture.build import build_dataset, export_imagefolder, export_webdataset, load_build_config

    cfg = load_build_config(args.config, scale=args.scale, colour_method=args.colour_method,
                            colour_levels=args.colour_levels, name=args.name, keep_aligned=args.keep_aligned,
                            screen=args.screen)
    out = build_dataset(args.sources, args.canvases, args.photos, args.out, cfg, progress=not args.no_progress)
    meta = json.loads((out / "dataset.json").read_text())
    c = meta["counts"]
    print(f"{out}: {c['ok']} ok, {c['rejected']} rejected of {c['pairs']} pairs (see {out / 'report.md'})")
    if args.export_hf:
        print(f"ImageFolder: {export_imagefolder(out, args.export_hf)}")
    if args.export_wds:
        print(f"WebDataset: {', '.join(str(p) for p in export_webdataset(out, args.export_wds))}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from data_capture.build import export_imagefolder, export_webdataset

    if not args.hf and not args.wds:
        raise ConfigError("nothing to export: pass --hf DIR and/or --wds DIR")
    if args.hf:
        print(f"ImageFolder: {export_imagefolder(args.dataset, args.hf)}")
    if args.wds:
        print(f"WebDataset: {', '.join(str(p) for p in export_webdataset(args.dataset, args.wds))}")
    return 0
