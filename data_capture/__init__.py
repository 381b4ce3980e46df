"""Paired SR datasets from screen re-photographs (ScreenSR / VOSR appendix A.2).

Stages, one module each: ``canvas`` (source on a marker canvas + layout JSON), ``show``
(full-screen capture order), ``simulate`` (phone-photo simulator with ground truth), ``detect``
(ArUco markers), ``register`` (markers -> ECC -> residual field, warps), ``colorfix`` (wavelet /
AdaIN), ``quality`` (QA figures, thresholds, report), ``pair`` (one photo end to end), ``build``
(dataset folder, resume, exports) and ``pipeline`` (the simulated demo path). ``cli`` adds the
``screensr capture`` verbs. Nothing is imported here, so ``import data_capture`` is free.
"""
