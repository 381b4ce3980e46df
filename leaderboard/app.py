"""ScreenSR leaderboard: the Streamlit entry point (``st.navigation`` over the page files).

Run it with ``screensr board [--store URL]`` (which calls ``streamlit run`` on this file with
``SCREENSR_STORE`` set), or directly: ``SCREENSR_STORE=sqlite:///results.db streamlit run
leaderboard/app.py``. Pages are files so that ``AppTest.switch_page("board/pages/<name>.py")`` can
reach every one of them: the results pages are the board's (``leaderboard/board/pages/``), the study
admin page the study's. This entry is the one place that joins the two halves.
"""

import streamlit as st

st.set_page_config(page_title="ScreenSR leaderboard", page_icon=":material/leaderboard:", layout="wide")

pages = {
    "Results": [
        st.Page("board/pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
        st.Page("board/pages/plots.py", title="Plots", icon=":material/scatter_plot:"),
        st.Page("board/pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("board/pages/methods.py", title="Methods", icon=":material/menu_book:"),
    ],
    # Voting is not offered here: participants use the separate voter-only app
    # (`screensr board study serve`), which can reach no results page.
    "User study": [st.Page("study/pages/study_admin.py", title="Study admin", icon=":material/analytics:")],
    "Admin": [st.Page("board/pages/submit.py", title="Submit", icon=":material/upload:")],
}

st.navigation(pages).run()
