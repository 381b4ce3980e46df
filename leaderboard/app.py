"""ScreenSR leaderboard: the Streamlit entry point (``st.navigation`` over the page files).

Run it with ``screensr board [--store URL]`` (which calls ``streamlit run`` on this file with
``SCREENSR_STORE`` set), or directly: ``SCREENSR_STORE=sqlite:///results.db streamlit run
leaderboard/app.py``. Pages are files so that ``AppTest.switch_page("pages/<name>.py")`` can
reach every one of them.
"""

import streamlit as st

st.set_page_config(page_title="ScreenSR leaderboard", page_icon=":material/leaderboard:", layout="wide")

pages = {
    "Results": [
        st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", default=True),
        st.Page("pages/plots.py", title="Plots", icon=":material/scatter_plot:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("pages/methods.py", title="Methods", icon=":material/menu_book:"),
    ],
    # Voting is not offered here: participants use the separate voter-only app
    # (`screensr board study serve`), which can reach no results page.
    "User study": [st.Page("study/pages/study_admin.py", title="Study admin", icon=":material/analytics:")],
    "Admin": [st.Page("pages/submit.py", title="Submit", icon=":material/upload:")],
}

st.navigation(pages).run()
