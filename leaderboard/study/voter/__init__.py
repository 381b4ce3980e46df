"""The voter-only app of the user studies: the one thing a participant's link opens.

``screensr board study serve`` runs ``app.py`` as its own Streamlit server. It has a single
page, the vote page: no navigation, no results page, no admin page, no method names, no
Streamlit toolbar or menu, and any other URL path lands on the same vote page. The results board
(``screensr board``) serves no vote page, so nothing links from a vote into the results.

Modules:
    ``links``  the participant and open-enrolment links the CLI and the admin page hand out.
    ``app``    the Streamlit script (a page script: it renders when Streamlit runs it).

Nothing is imported here: ``import leaderboard.study.voter`` stays free of Streamlit.
"""
