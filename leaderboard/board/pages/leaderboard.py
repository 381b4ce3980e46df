"""Leaderboard page: per dataset, methods x metrics (mean and bootstrap CI), filters, ranking.

Thin: every number comes from ``leaderboard.board.data`` (tested pure functions).
"""

import streamlit as st

from benchmark import report
from leaderboard.board import cache, data, display, loading, versions

board = cache.board_or_stop()
st.title("Leaderboard")

filters = st.columns([1, 1, 2, 1])
protocol = filters[0].selectbox(
    "Protocol",
    [loading.ALL_PROTOCOLS, *loading.protocol_names()],
    key="lb_protocol",
    help="keep only scores computed with a named protocol's metrics and exact pinned settings "
    "(benchmark.metrics.PROTOCOLS); 'any' shows every stored score",
)
if protocol is None:  # a selectbox with options always has a value; this narrows the type
    st.stop()
summary = board.summary_for(protocol)
datasets = sorted(summary["dataset"].unique())
dataset = filters[1].selectbox("Dataset", datasets, key="lb_dataset")
if dataset is None:
    st.info(f"No score in the store was computed with the `{protocol}` protocol's settings.")
    st.stop()

present_families = board.present_families()
families = filters[2].multiselect("Method family", present_families, default=present_families, key="lb_families")
metric_set = filters[3].selectbox("Metric set", [*display.METRIC_SETS, "Custom"], key="lb_metric_set")
if metric_set is None:
    st.stop()

all_columns = board.columns(dataset, summary)
if metric_set == "Custom":
    picked = st.multiselect(
        "Metrics",
        [c.name for c in all_columns],
        default=[c.name for c in all_columns if c.default],
        format_func=lambda name: display.metric_column(name, board.known).header,
        key="lb_metrics",
    )
    columns = [c for c in all_columns if c.name in picked]
else:
    columns = display.select_metric_set(all_columns, metric_set)
if not columns:
    st.warning("No metric selected: pick at least one metric (or another metric set).")
    st.stop()

options = st.columns([2, 1, 1])
sort_by = options[0].selectbox(
    "Sort by",
    ["rank", *[c.name for c in columns]],
    format_func=lambda name: "aggregated rank (mean of per-metric ranks)"
    if name == "rank"
    else display.metric_column(name, board.known).header,
    key="lb_sort",
)
if sort_by is None:
    st.stop()
show_ci = options[1].toggle("Confidence intervals", value=True, key="lb_ci")
search = options[2].text_input("Method contains", key="lb_search")

names = data.filter_methods(
    board.methods, families=families, present=summary.loc[summary["dataset"] == dataset, "method"].unique()
)
if search:
    names = [n for n in names if search.lower() in n.lower()]
table = board.table(dataset, columns, summary=summary, include=names, protocol=protocol)
table = data.sort_table(table, sort_by, columns)

level = round(report.CONFIDENCE * 100)
st.caption(
    f"**{dataset}** · {len(table)} methods · each cell: mean over the dataset's images [{level} % bootstrap "
    f"interval, {report.N_BOOT} resamples] · arrows give each metric's direction · only methods with a score for "
    "every image are ranked (the others show n/N images and come last) · the rank averages per-metric ranks, "
    "each in its own direction · click a header to re-sort."
)
if table.empty:
    st.info("No method matches these filters.")
else:
    ranked = table[table["rank"].notna()]
    if len(ranked):
        podium = " · ".join(f"{int(r['rank'])}. **{r['method']}**" for _, r in ranked.head(3).iterrows())
        st.markdown(f"Best by aggregated rank: {podium}")
    else:
        st.warning("No method has a score for every image of this dataset with these metrics: nothing is ranked.")
    unranked = table[table["rank"].isna()]
    if len(unranked):
        st.caption(
            "Not ranked: "
            + ", ".join(f"{r['method']} ({r['status']}, {r['n']}/{r['n_total']} images)" for _, r in unranked.iterrows())
        )
    headers = data.header_labels(columns)
    config = {
        headers["rank"]: st.column_config.NumberColumn(help="aggregated rank, 1 = best (complete methods only)"),
        headers["mean_rank"]: st.column_config.NumberColumn(help="mean of the per-metric ranks"),
        headers["status"]: st.column_config.TextColumn(
            help="complete: a score for every image; incomplete / failed / partial...: not ranked"
        ),
        headers["n"]: st.column_config.TextColumn(help="images averaged (n/N when the method lacks images)"),
        headers["shared_rank"]: st.column_config.TextColumn(
            help=f"the aggregated rank's {level} % bootstrap interval over images (paired across methods, "
            f"{report.N_BOOT} resamples); methods whose intervals overlap share a rank such as 2-3"
        ),
    }
    for c in columns:
        direction = {True: "higher is better", False: "lower is better", None: "direction unknown"}[c.higher_is_better]
        unit = f" ({c.unit})" if c.unit else ""
        ci_help = f"; mean [{level} % CI]" if show_ci else ""
        config[headers[c.name]] = st.column_config.NumberColumn(help=f"{c.label}{unit}: {direction}{ci_help}")
    st.dataframe(data.styled_table(table, columns, ci=show_ci), column_config=config, hide_index=True,
                 width="stretch", key="lb_table")  # fmt: skip
    downloads = st.columns(4)
    downloads[0].download_button(
        "Download CSV", table.to_csv(index=False), file_name=f"leaderboard-{dataset}.csv", mime="text/csv"
    )
    downloads[1].download_button(
        "Download JSON",
        data.table_json(table, dataset, columns),
        file_name=f"leaderboard-{dataset}.json",
        mime="application/json",
    )

if not table.empty:  # which version of each method these scores come from (store rows are name + version)
    shown_versions = versions.shown_versions(board.score_versions(), board.methods, dataset)
    labels = [shown_versions[m].label for m in table["method"] if m in shown_versions]
    st.caption("Versions shown: " + " · ".join(labels))

if not table.empty:
    ranked_columns = [c for c in columns if c.higher_is_better is not None]
    # a detail view, computed only when asked for: the per-metric bootstrap and the pairwise tests
    # over every method pair cost more than the rest of the page together
    details = st.toggle("Rank intervals per metric and pairwise tests", key="lb_rank_details")
    if details:
        boxes = board.rank_intervals(dataset, [c.name for c in ranked_columns], names, protocol)
        if boxes.empty:
            st.info("No method is complete on these metrics: nothing is ranked.")
        else:
            st.caption(
                f"Each metric's rank with its {level} % bootstrap interval (images resampled, the same images for "
                "every method); overlapping intervals share a rank (2-3)."
            )
            st.dataframe(data.rank_interval_table(boxes, ranked_columns), hide_index=True, key="lb_rank_boxes")
        if ranked_columns:
            pair_metric = st.selectbox(
                "Pairwise tests on", [c.name for c in ranked_columns],
                format_func=lambda name: display.metric_column(name, board.known).header, key="lb_pair_metric",
            )  # fmt: skip
            if pair_metric is not None:
                tests = board.pairwise(dataset, pair_metric)
                tests = tests[tests["a"].isin(names) & tests["b"].isin(names)]
                if tests.empty:
                    st.info("Fewer than two complete methods on this metric.")
                else:
                    st.caption("Paired Wilcoxon signed-rank p-values on the shared images, Holm-corrected over all pairs.")
                    st.dataframe(report.pairwise_matrix(tests).reset_index(), hide_index=True, key="lb_pairwise")

    derived = board.derived(dataset, "ntire2025")
    derived = derived[derived["method"].isin(names)]
    if len(derived):
        st.subheader("NTIRE 2025 perceptual score")
        st.caption(
            "(1 - LPIPS) + (1 - DISTS) + CLIPIQA + MANIQA + MUSIQ / 100 + max(0, (10 - NIQE) / 10) on the dataset "
            "means, MANIQA being pyiqa's KonIQ model as in the challenge script (NTIRE 2025 image SR x4, "
            "arXiv:2504.14582); the components are shown beside it."
        )
        st.dataframe(data.derived_display(derived), hide_index=True, key="lb_ntire")

    compared = board.reported_vs_measured(dataset)
    if len(compared):
        st.subheader("Reported vs measured")
        st.caption(
            "Published numbers (imported with `screensr bench import-reported`, never mixed into the means above) "
            "beside what this store measured; ✓ when the suite reproduced the value within the metric's tolerance "
            "(MetricSpec.reproduce_tol plus the rounding of the printed value) on every compared image."
        )
        st.dataframe(data.reported_display(compared), hide_index=True, key="lb_reported")

st.subheader("Ground-truth quality")
st.caption("No-reference scores of the HR images themselves (as in the VOSR paper's Table 2).")
gt = data.gt_quality_table(summary)
if gt.empty:
    st.info("The store has no GT scores; compute them with `screensr bench gt-quality`.")
else:
    gt_columns = display.metric_columns([c for c in gt.columns if c not in ("dataset", "n")], board.known)
    st.table(gt.rename(columns={"dataset": "Dataset", "n": "Images", **{c.name: c.header for c in gt_columns}}))
