"""Export a study's votes as a tidy table, and read an export back to rebuild its report.

An export is the tidy vote table (:meth:`leaderboard.study.store.StudyStore.votes_frame`: one row
per judgement with every design's fields) plus the study's definition and chain head:

* Parquet: one file; the definition travels in the file's schema metadata (key
  ``screensr.study``), and a ``NAME.study.json`` is written beside it as well;
* CSV: the table, and the definition in ``NAME.study.json`` beside it.

The definition is ``{"study": <stored config>, "config_hash", "created_at", "chain_version",
"head_hash", "votes", "chain_ok", "exported_at", "app_version"}``. :func:`load_export` reads either
form back, so ``screensr board study report --from-export FILE`` rebuilds the report without the
store.

Example:
    >>> export_votes(store, "vosr-ms", "votes/vosr-ms.parquet")   # doctest: +SKIP
    >>> loaded = load_export("votes/vosr-ms.parquet")              # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.atomic import atomic_write_bytes, atomic_write_text
from core.errors import MissingFileError, UserError
from leaderboard.study.config import StudyConfig, config_from_dict
from leaderboard.study.store import StudyStore, app_version, utc_now

META_KEY = b"screensr.study"


class ExportError(UserError, ValueError):
    """A file that is not a study export (or whose definition is missing or damaged)."""


@dataclass(frozen=True)
class LoadedExport:
    """An export read back: the tidy votes, the study's config and the export's definition."""

    votes: pd.DataFrame
    config: StudyConfig
    definition: dict[str, Any]


def definition_path(out: Path) -> Path:
    """The ``NAME.study.json`` beside an export file."""
    return out.with_name(out.stem + ".study.json")


def export_payload(store: StudyStore, name: str, fmt: str) -> tuple[bytes, str]:
    """The export of study ``name`` in ``fmt`` (``csv`` or ``parquet``): ``(file bytes, definition
    JSON)``; a Parquet file carries the definition in its metadata."""
    info = store.study(name)
    votes = store.votes_frame(name)
    check = store.verify(name)
    definition = {
        "study": info.config.to_dict(), "config_hash": info.config_hash, "created_at": info.created_at,
        "chain_version": info.chain_version, "head_hash": check.head_hash, "votes": check.n_votes,
        "chain_ok": check.ok, "exported_at": utc_now(), "app_version": app_version(),
    }  # fmt: skip
    blob = json.dumps(definition, indent=2, sort_keys=True)
    if fmt == "csv":
        return votes.to_csv(index=False).encode(), blob
    if fmt != "parquet":
        raise ExportError(f"unknown export format {fmt!r}; use csv or parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(votes, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: blob.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue(), blob


def export_votes(store: StudyStore, name: str, out: str | Path, fmt: str | None = None) -> tuple[Path, int]:
    """Write study ``name``'s votes to ``out`` (``.csv`` or ``.parquet``) and the definition beside
    it, atomically; returns ``(path written, votes)``. ``fmt`` overrides the suffix."""
    out = Path(out)
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    if fmt == "parquet" and out.suffix.lower() != ".parquet":
        out = out.with_suffix(".parquet")
    payload, blob = export_payload(store, name, fmt)
    atomic_write_bytes(out, payload)
    atomic_write_text(definition_path(out), blob)
    return out, int(json.loads(blob)["votes"])


def load_export(path: str | Path) -> LoadedExport:
    """Read an export (Parquet or CSV with its ``.study.json``) back.

    Raises:
        MissingFileError: the file, or a CSV's definition file, does not exist.
        ExportError: the file holds no study definition, or it does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"export {path} not found; pass a file written by `screensr board study export`")
    blob: str | None = None
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(META_KEY)
        blob = None if raw is None else raw.decode()
        votes = table.to_pandas()
    else:
        votes = pd.read_csv(path, keep_default_na=True)
    if blob is None:
        side = definition_path(path)
        if not side.is_file():
            raise MissingFileError(
                f"{path}: the study definition {side.name} is not beside it (an export writes both; copy it along)"
            )
        blob = side.read_text(encoding="utf-8")
    try:
        definition = json.loads(blob)
        config = config_from_dict(definition["study"], where=f"{path} (study definition)")
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: the study definition does not parse ({exc}); re-export the study") from exc
    return LoadedExport(_typed(votes), config, definition)


def _typed(votes: pd.DataFrame) -> pd.DataFrame:
    """The tidy table's types after a CSV round trip (empty strings, booleans, timestamps)."""
    frame = votes.copy()
    for column in ("choice", "ranking", "shown", "gold_answer", "response_json"):
        if column in frame:
            frame[column] = frame[column].where(frame[column].notna(), None if column in ("gold_answer",
                                                                                          "response_json") else "")
    for column in ("choice", "ranking", "shown"):
        if column in frame:
            frame[column] = frame[column].astype(str)
    for column in ("is_gold", "correct", "no_preference"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: v if isinstance(v, bool) else str(v).lower() == "true")
    for column in ("served_at", "voted_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
