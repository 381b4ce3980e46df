"""ScreenSR leaderboard: a Streamlit site over the benchmark's results store, and user studies.

Modules:
    ``data``         pure functions over the store's frames: aggregation with bootstrap CIs,
                     direction-aware ranking, Pareto front, the metric columns; cached loading.
    ``crops``        the compare view: same-region crops of LR, HR and outputs (lossless PNG).
    ``submissions``  validation and server-side scoring of submitted SR outputs; the admin secret.
    ``archives``     bounded, streaming unpacking of untrusted upload archives.
    ``versions``     which method version each dataset shows; a method's version history.
    ``export``       the static site (``screensr board export``).
    ``cli``          ``screensr board`` (serve), ``export`` and ``study`` verbs.
    ``app``          the Streamlit entry point; pages live in ``pages/``.
    ``study/``       user studies (definitions, assignment, the vote store and its hash chain,
                     statistics, the ``study`` verbs, the voter-only app, the Study admin page).

Nothing is imported here: ``import leaderboard`` stays free of Streamlit and pandas.
"""
