"""ScreenSR benchmark: score SR methods on paired datasets with pyiqa metrics, reproducibly.

Modules (one concept each; nothing runs at import):

- :mod:`benchmark.datasets`: paired datasets matched by name (generic, capture, RealSR, DRealSR,
  the StableSR/OSEDiff crops, ScreenSR / Hugging Face, LR-only).
- :mod:`benchmark.methods`: SR methods (bicubic, Lanczos, Real-ESRGAN/ncnn, VOSR, folders,
  commands, Python functions) and the output cache.
- :mod:`benchmark.metrics`: pinned metric specs over pyiqa and the protocol presets.
- :mod:`benchmark.runner`: ``evaluate(datasets, methods, metrics, store=...)``: resumable,
  sharded (torch.distributed) evaluation.
- :mod:`benchmark.store`: the results store (SQLAlchemy; SQLite by default).
- :mod:`benchmark.report`, :mod:`benchmark.plots`: tables, comparisons, ranks, plots.
- :mod:`benchmark.weights`: where each metric's weight files go.

Example:
    >>> from benchmark.runner import evaluate                                # doctest: +SKIP
    >>> from benchmark.report import summary                                 # doctest: +SKIP
    >>> frame = evaluate(["data/demo"], ["bicubic", "folder:outputs/mine"], "psnr,ssim,niqe",
    ...                  store="sqlite:///results.db")                        # doctest: +SKIP
    >>> summary(frame)                                                        # doctest: +SKIP
"""
