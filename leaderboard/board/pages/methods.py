"""Method pages: a method's description, configuration, provenance, links and versions.

A method has one row per version in the results store; the page describes the current version
and lists every version with the datasets whose board shows it (``leaderboard.board.versions``).

``?method=NAME`` in the URL opens that method directly (links from exports and papers).
"""

import streamlit as st

from leaderboard.board import cache, data, loading, versions
from leaderboard.board.submissions import is_web_link

board = cache.board_or_stop()
st.title("Methods")

names = data.filter_methods(board.methods)
if not names:
    st.info("The store describes no method yet.")
    st.stop()
wanted = st.query_params.get("method")
index = names.index(wanted) if wanted is not None and wanted in names else 0
name = st.selectbox("Method", names, index=index, key="mt_method")
if name is None:
    st.stop()
st.query_params["method"] = name

info = loading.method_info(board, name)
st.header(name)
meta = st.columns(3)
meta[0].metric("Family", info.family)
meta[1].metric("Current version", info.version or "–")
meta[2].metric("Datasets scored", len(info.coverage))
st.markdown(info.description or "_No description recorded._")

if info.links:
    st.subheader("Links")
    # only http(s) URLs become links; anything else stored there is shown as code, never followed
    st.markdown("\n".join(f"- [{link}]({link})" if is_web_link(link) else f"- `{link}`" for link in info.links))

st.subheader("Results")
if info.coverage.empty:
    st.info("No scores for this method yet.")
else:
    st.dataframe(info.coverage, hide_index=True, key="mt_coverage")

st.subheader("Versions")
history = versions.version_history(board.all_versions(), board.score_versions(), name)
st.caption("Each version is a separate entry: a new version never changes the scores or outputs of an earlier one.")
st.dataframe(history, hide_index=True, key="mt_versions")

st.subheader("Configuration")
st.caption(f"Everything that changes the outputs; its hash `{info.config_hash}` is stored with every score.")
st.json(info.config, expanded=True)

st.subheader("Provenance")
prov = st.columns(2)
prov[0].markdown(f"**Outputs**: `{info.outputs or '–'}`")
prov[0].markdown(f"**Registered / updated**: {info.updated}")
prov[1].markdown("**Scores computed with**:")
if info.versions:
    prov[1].json(info.versions, expanded=False)
else:
    prov[1].markdown("_not recorded_")
