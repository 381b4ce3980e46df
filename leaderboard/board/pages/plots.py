"""Plots page: the perception-distortion plane with its Pareto front; per-image distributions.

Axes are oriented so that "better" is always right and up (a lower-is-better metric gets a
reversed axis); the front is computed by ``leaderboard.board.data.pareto_front``.
"""

import altair as alt
import streamlit as st

from leaderboard.board import cache, data

board = cache.board_or_stop()
st.title("Plots")

dataset = st.selectbox("Dataset", board.dataset_names(), key="pl_dataset")
if dataset is None:  # the board has scores (board_or_stop), so a dataset; this narrows the type
    st.stop()
columns = [c for c in board.columns(dataset) if c.higher_is_better is not None]
fidelity = [c for c in columns if c.fidelity] or columns
perceptual = [c for c in columns if not c.fidelity] or columns
by_name = {c.name: c for c in columns}

st.subheader("Perception-distortion plane")
st.caption(
    "Each point is a method's mean over the dataset's images. Methods on the Pareto front (PIRM 2018) are not "
    "beaten on both axes by any other method. Axes point towards better."
)
if not columns:
    st.info("No metric with a known direction on this dataset.")
    st.stop()
axes = st.columns(2)
x_name = axes[0].selectbox(
    "Fidelity axis (x)", [c.name for c in fidelity], format_func=lambda n: by_name[n].header, key="pl_x"
)
default_y = next((i for i, c in enumerate(perceptual) if c.name in ("musiq", "maniqa")), 0)
y_name = axes[1].selectbox(
    "Perceptual axis (y)",
    [c.name for c in perceptual],
    index=default_y,
    format_func=lambda n: by_name[n].header,
    key="pl_y",
)
if x_name is None or y_name is None:
    st.stop()
x_col, y_col = by_name[x_name], by_name[y_name]
points = data.plane_points(board.summary, dataset, x_col, y_col, board.methods)
if points.empty:
    st.info("No method has both metrics on this dataset.")
else:
    points = points.assign(on_front=points["pareto"].map({True: "Pareto front", False: "dominated"}))
    x_enc = alt.X("x:Q", title=x_col.header, scale=alt.Scale(zero=False, padding=24, reverse=not x_col.higher_is_better))
    y_enc = alt.Y("y:Q", title=y_col.header, scale=alt.Scale(zero=False, padding=24, reverse=not y_col.higher_is_better))
    tooltip = [
        alt.Tooltip("method:N"),
        alt.Tooltip("family:N"),
        alt.Tooltip("x:Q", title=x_col.label, format=f".{x_col.decimals}f"),
        alt.Tooltip("y:Q", title=y_col.label, format=f".{y_col.decimals}f"),
    ]
    dots = (
        alt.Chart(points)
        .mark_point(filled=True, size=90)
        .encode(
            x=x_enc,
            y=y_enc,
            color=alt.Color("family:N", title="Family"),
            shape=alt.Shape("on_front:N", title=""),
            tooltip=tooltip,
        )
    )
    labels = alt.Chart(points).mark_text(align="left", dx=7, dy=-6, fontSize=11).encode(x=x_enc, y=y_enc, text="method:N")
    front = (
        alt.Chart(points[points["pareto"]].sort_values("x"))
        .mark_line(color="#d62728", strokeDash=[5, 3])
        .encode(x=x_enc, y=y_enc, order="x:Q")
    )
    st.altair_chart((front + dots + labels).interactive(), width="stretch")
    front_table = points[points["pareto"]].sort_values("x", ascending=not x_col.higher_is_better)
    st.markdown("**Pareto front:** " + ", ".join(front_table["method"]))
    st.dataframe(
        points[["method", "family", "x", "y", "pareto"]].rename(
            columns={"method": "Method", "family": "Family", "x": x_col.header, "y": y_col.header, "pareto": "On front"}
        ),
        hide_index=True,
        key="pl_points",
    )

st.subheader("Per-image distributions")
dist_metric = st.selectbox(
    "Metric", [c.name for c in columns], format_func=lambda n: by_name[n].header, key="pl_dist_metric"
)
if dist_metric is None:
    st.stop()
in_dataset = data.filter_methods(
    board.methods, names=board.scores.loc[board.scores["dataset"] == dataset, "method"].unique(),
    present=board.scores.loc[board.scores["dataset"] == dataset, "method"].unique(),
)
ranked = data.leaderboard_table(board.summary, dataset, [by_name[dist_metric]], methods=board.methods)
default_methods = [m for m in ranked["method"] if m in in_dataset][:8]
chosen = st.multiselect("Methods", in_dataset, default=default_methods, key="pl_dist_methods")
values = data.per_image(board.scores, dataset, dist_metric, chosen)
if values.empty:
    st.info("Pick at least one method.")
else:
    col = by_name[dist_metric]
    order = [m for m in ranked["method"] if m in chosen]
    box = (
        alt.Chart(values)
        .mark_boxplot(extent="min-max")
        .encode(
            x=alt.X("method:N", sort=order, title="Method (best first)"),
            y=alt.Y("value:Q", title=col.header, scale=alt.Scale(zero=False, reverse=not col.higher_is_better)),
        )
    )
    dots = (
        alt.Chart(values)
        .mark_circle(size=18, opacity=0.45, color="#444")
        .encode(x=alt.X("method:N", sort=order), y="value:Q", tooltip=["image:N", "method:N", alt.Tooltip("value:Q")])
    )
    st.altair_chart((box + dots).interactive(), width="stretch")
    st.caption(f"{len(values)} per-image scores; whiskers span min to max; hover a dot for its image.")
