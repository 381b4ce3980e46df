"""Compare page: one image, several methods; the same crop of LR, HR and each output, side by side.

Crops are enlarged by whole-pixel replication (nearest neighbour) and served as PNG bytes with
``output_format="PNG"``: Streamlit never re-encodes them as JPEG, and panels are kept narrower
than Streamlit's 1460 px limit so it never resizes them either.
"""

import streamlit as st

from leaderboard import crops
from leaderboard.board import cache, data, display, versions

MAX_PANEL_PX = 1456  # Streamlit resizes (bilinear) any image wider than 1460 px: stay below
PANEL_ROW_PX = 1200  # panels per row chosen so that a row fits a wide-layout page

board = cache.board_or_stop()
st.title("Compare")

top = st.columns([1, 2])
dataset = top[0].selectbox("Dataset", board.dataset_names(), key="cmp_dataset")
if dataset is None:  # the board has scores (board_or_stop), so a dataset; this narrows the type
    st.stop()
try:
    images = cache.cached_dataset_images(board, dataset)
except (KeyError, FileNotFoundError, ValueError) as exc:
    st.error(str(exc))
    st.stop()
scored = board.scores[board.scores["dataset"] == dataset]
ids = sorted(set(scored["image"]) & set(images))
if not ids:
    st.info(f"No scored image of {dataset!r} was found in its folder.")
    st.stop()
image = top[1].selectbox("Image", ids, key="cmp_image")
if image is None:
    st.stop()

ranked = data.leaderboard_table(board.summary, dataset, board.columns(dataset), methods=board.methods)
available = [m for m in ranked["method"] if m in set(scored.loc[scored["image"] == image, "method"])]
# The selection survives a change of dataset or image only where its methods exist there: keep
# those, or (none left) start again from the top-ranked methods of the new dataset.
chosen = st.session_state.get("cmp_methods")
if chosen is not None:
    kept = [m for m in chosen if m in available] or available[:3]
    if kept != list(chosen):
        st.session_state["cmp_methods"] = kept
methods = st.multiselect(
    "Methods", available, default=None if "cmp_methods" in st.session_state else available[:3], key="cmp_methods"
)
shown = versions.shown_versions(board.score_versions(), board.methods, dataset)

controls = st.columns(4)
cx = controls[0].slider("Crop centre x", 0.0, 1.0, 0.5, 0.01, key="cmp_cx")
cy = controls[1].slider("Crop centre y", 0.0, 1.0, 0.5, 0.01, key="cmp_cy")
crop = controls[2].selectbox("Crop side (HR px)", [32, 48, 64, 96, 128, 192, 256, 384, 512], index=4, key="cmp_crop")
zoom = controls[3].selectbox("Zoom (nearest neighbour)", [1, 2, 3, 4, 6, 8], index=1, key="cmp_zoom")
if crop is None or zoom is None:
    st.stop()
if crop * zoom > MAX_PANEL_PX:
    fitted = max(1, MAX_PANEL_PX // crop)
    st.warning(f"{crop} px x {zoom} would exceed {MAX_PANEL_PX} px per panel; zoom lowered to {fitted}.")
    zoom = fitted

files = images[image]
outputs = {}
for m in methods:
    # the outputs of the version whose scores this dataset shows (not merely the newest version)
    location = shown[m].outputs if m in shown else ""
    outputs[m] = crops.method_output(location, files)
try:
    box, panels = crops.comparison_crops(files, outputs, (cx, cy), int(crop), int(zoom))
except (FileNotFoundError, ValueError) as exc:
    st.error(str(exc))
    st.stop()

side = (box[2] - box[0]) * zoom
st.caption(
    f"Region x {box[0]}-{box[2]}, y {box[1]}-{box[3]} of the HR image ({box[2] - box[0]} px square), shown at "
    f"{side} px: every pixel is a {zoom}x{zoom} block (LR: {zoom * files.scale}x{zoom * files.scale}); lossless PNG."
)
labels = [shown[m].label for m in methods if m in shown]
if labels:
    st.caption("Versions shown: " + " · ".join(labels))
per_row = max(1, min(6, PANEL_ROW_PX // max(side, 1)))
names = list(panels)
for start in range(0, len(names), per_row):
    cells = st.columns(per_row)
    for cell, name in zip(cells, names[start : start + per_row], strict=False):
        with cell:
            panel = panels[name]
            label = {"LR": "LR input", "HR": "HR reference"}.get(name, name)
            if isinstance(panel, str):
                st.markdown(f"**{label}**")
                st.error(panel)
            else:
                st.image(crops.png_bytes(panel), caption=label, output_format="PNG")

st.subheader("Scores of this image")
table = data.image_scores(board.scores, dataset, image, [*methods, data.GT_METHOD])
if table.empty:
    st.info("No scores for this image and these methods.")
else:
    headers = {c.name: c.header for c in display.metric_columns(table.columns, board.known)}
    st.dataframe(table.rename(columns=headers).rename_axis("Method").reset_index(), hide_index=True, key="cmp_scores")
