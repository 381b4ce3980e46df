"""ScreenSR leaderboard: a Streamlit site over the benchmark's results store, and user studies.

Subpackages:
    ``board``        the results site: tables, plots, compare view, method pages, submissions,
                     the static export (``screensr board``, ``screensr board export``).
    ``study``        user studies: definitions, trial assignment, the vote store, statistics, the
                     voter-only app (``screensr board study ...``).

Top-level modules (what both halves may use, or what joins them):
    ``crops``        same-region crops of LR, HR and outputs (lossless PNG).
    ``app``          the Streamlit entry point (``st.navigation`` over both halves' page files).
    ``cli``          ``screensr board`` (serve), ``export``, ``hash-secret`` and the ``study`` verbs.

The board and the study never import each other; only ``app`` and ``cli`` see both. Nothing is
imported here: ``import leaderboard`` stays free of Streamlit and pandas.
"""
