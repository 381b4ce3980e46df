"""User-study voting page (work in progress: the full page lands shortly)."""

import streamlit as st

st.title("User study")
st.info("Open this page with the personal link you were given (it ends in `?token=...`).")
