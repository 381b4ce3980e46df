"""The results board: a Streamlit site (and a static export) over the benchmark's results store.

Modules:
    ``display``      how each metric is shown: label, unit, decimals, arrow (from ``MetricSpec``).
    ``data``         pure functions over the store's frames: summaries under the comparison rule,
                     the wide per-dataset table, Pareto front, filters, sorting, JSON.
    ``loading``      reading the store into a ``Board``; protocol filtering; the method page's facts.
    ``cache``        the Streamlit glue: one ``Board`` per store refreshed in the background, and
                     the cached readers the pages share.
    ``versions``     which method version each dataset shows; a method's version history.
    ``submissions``  validation and server-side scoring of submitted SR outputs; the admin secret.
    ``archives``     bounded, streaming unpacking of untrusted upload archives.
    ``export``       the static site (``screensr board export``).
    ``pages/``       the Streamlit pages (thin over the functions above).

The board never imports the user study (``leaderboard.study``); ``leaderboard/app.py`` and
``leaderboard/cli.py`` join the two. Nothing is imported here.
"""
