"""User-study admin page (work in progress: the full page lands shortly)."""

import streamlit as st

st.title("User study: administration")
st.info("Enter the study's admin secret to see its progress and analysis.")
