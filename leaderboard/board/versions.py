"""Method versions on the board: which version of a method each dataset's scores come from, and
a method's version history.

A method row of the results store is ``(name, version)``; the board shows, per dataset, the
latest score of every image and metric, and ``ResultsStore.score_versions`` says which version
those scores come from. The pages use these pure functions over that frame; the cached loaders
at the end read the store at most once per board refresh.

Example:
    >>> import pandas as pd
    >>> v = pd.DataFrame({"dataset": ["A"], "method": ["MySR"], "version": ["1.0"], "outputs": ["/s"], "images": [3]})
    >>> shown_versions(v, pd.DataFrame(columns=["name", "version", "outputs"]), "A")["MySR"].label
    'MySR 1.0'
"""

from __future__ import annotations

import dataclasses

import pandas as pd

HISTORY_COLUMNS = ["Version", "Shown on", "Family", "Outputs", "Registered / updated"]


@dataclasses.dataclass(frozen=True)
class ShownVersion:
    """The version of a method whose scores a dataset shows, and where its outputs are."""

    method: str
    versions: tuple[str, ...]
    """Every version the current scores come from, the one with most images first (more than one:
    a newer version was scored on fewer metrics than an older one)."""
    outputs: str
    """The outputs location of the first version (what the Compare page crops)."""

    @property
    def version_text(self) -> str:
        """``"2.0"``, ``"2.0 + 1.0"`` for mixed versions, ``""`` with no version."""
        return " + ".join(v for v in self.versions if v)

    @property
    def label(self) -> str:
        """``"MySR 2.0"``, ``"MySR 2.0 + 1.0"`` for mixed versions, ``"MySR"`` with no version."""
        return f"{self.method} {self.version_text}".strip()


def shown_versions(versions: pd.DataFrame, methods: pd.DataFrame, dataset: str) -> dict[str, ShownVersion]:
    """``{method: ShownVersion}`` of every method with scores on ``dataset``.

    Args:
        versions: ``ResultsStore.score_versions()`` (``dataset, method, version, outputs, images``).
        methods: the store's methods frame (current version per name): used for a method whose
            scores match no version row (``version`` None).
        dataset: the dataset shown.
    """
    part = versions[versions["dataset"] == dataset] if len(versions) else versions
    current = methods.drop_duplicates("name").set_index("name") if len(methods) else None
    shown: dict[str, ShownVersion] = {}
    for name, group in part.groupby("method", sort=True):
        known = group.dropna(subset=["version"]).sort_values("images", ascending=False, kind="stable")
        if len(known):
            shown[str(name)] = ShownVersion(
                str(name), tuple(map(str, known["version"])), str(known["outputs"].iloc[0])
            )
        elif current is not None and name in current.index:
            row = current.loc[name]
            shown[str(name)] = ShownVersion(str(name), (str(row["version"]),), str(row["outputs"]))
    return shown


def version_history(all_versions: pd.DataFrame, versions: pd.DataFrame, name: str) -> pd.DataFrame:
    """Every version of method ``name``, newest first, with the datasets whose board shows it.

    Args:
        all_versions: ``ResultsStore.methods_frame(all_versions=True)``.
        versions: ``ResultsStore.score_versions()``.
        name: the method.

    Returns:
        Columns :data:`HISTORY_COLUMNS` (``Shown on``: dataset names joined by ", ", or "–").
    """
    rows = all_versions[all_versions["name"] == name]
    mine = versions[versions["method"] == name] if len(versions) else versions
    out = []
    for _, row in rows.iterrows():
        on = sorted(set(mine.loc[mine["version"] == row["version"], "dataset"])) if len(mine) else []
        out.append(
            {
                "Version": str(row["version"]) or "–",
                "Shown on": ", ".join(on) or "–",
                "Family": str(row["family"]),
                "Outputs": str(row["outputs"]) or "–",
                "Registered / updated": str(row["updated"]),
            }
        )
    return pd.DataFrame(out, columns=HISTORY_COLUMNS)
