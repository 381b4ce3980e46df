"""What every ScreenSR package shares, and nothing more.

``core`` sits below ``data_capture``, ``vosr``, ``benchmark``, ``leaderboard`` and ``screensr`` and
imports none of them (a test parses the imports to keep it so). Its modules:

- :mod:`core.errors`: :class:`UserError` (printed by the CLI without a traceback) and
  :func:`did_you_mean`.
- :mod:`core.paths`: the cache locations (``screensr_home``, the torch hub, the Hugging Face cache).
- :mod:`core.atomic`: atomic, umask-respecting writes (temporary file in the same folder, then
  ``os.replace``).
- :mod:`core.config`: the typed, nested dataclass loader for YAML/JSON (unknown keys rejected).
- :mod:`core.weights`: the weight-file record every package's catalogue returns.
- :mod:`core.imagelimits`: the pixel limit checked on image headers before anything is decoded.

Nothing happens at import time.
"""
