"""User studies of SR outputs: definitions, trial assignment, the vote store, statistics, the voter app.

Modules (one concept each; data flows config -> validation -> assignment -> store -> stats):
    ``config``      the YAML layout (typed, :mod:`core.config`) and the resolved ``StudyConfig``.
    ``validation``  ``load_study``: every image the study shows checked and hashed.
    ``assignment``  trials and their server-side assignment (order, candidates on screen).
    ``serving``     the metadata-free PNG bytes and zoomed crops the vote page shows.
    ``chain``       the hash chain: canonical forms and how they link (pure functions).
    ``schema``      the store's tables and the triggers that freeze them.
    ``writer``      serialised, group-committed writes (locks, transactions).
    ``store``       ``StudyStore``: studies, participants, votes, ``verify``, analysis frames.
    ``stats``       shares and intervals, tests, agreement, choice models, participant checks.
    ``cli``         the ``screensr board study`` verbs.
    ``voter/``      the voter-only Streamlit app (``screensr board study serve``).
    ``pages/``      the board's Study admin page (``pages/study_admin.py``).

The study never imports the results board (``leaderboard.board``). Nothing is imported here:
``import leaderboard.study`` stays free of Streamlit, pandas and SQLAlchemy.
"""
