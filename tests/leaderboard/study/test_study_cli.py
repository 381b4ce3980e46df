"""``screensr board study create|invite|status|report|verify|export`` end to end."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study
from screensr.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["board", "study", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _vote_everything(store: StudyStore, tokens: list[str]) -> None:
    for token in tokens:
        p = store.participant(token)
        while (view := store.next_trial(p)) is not None:
            store.mark_served(view.assignment_id)
            for key in ("perceptual", "consistency"):
                store.record_vote(p, view.assignment_id, key, view.shown.index("beta") if "beta" in view.shown else 0)


@pytest.fixture()
def created(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_study_files) -> tuple[str, list[str], str]:
    path = make_study_files(tmp_path, n_images=3)
    db = str(tmp_path / "votes.sqlite")
    code, out, err = _run(capsys, "create", str(path), "--store", db, "--participants", "3",
                          "--base-url", "https://votes.example.org/")  # fmt: skip
    assert code == 0, err
    links = out.split()
    assert len(links) == 3 and all(link.startswith("https://votes.example.org/?token=") for link in links)
    assert "admin secret" in err
    tokens = [parse_qs(urlparse(link).query)["token"][0] for link in links]
    return db, tokens, str(path)


def test_create_prints_links_and_is_idempotent(created, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, path = created
    store = StudyStore(db)
    assert all(store.participant(t) is not None for t in tokens)
    code, out, err = _run(capsys, "create", path, "--store", db)
    assert code == 0 and out == "" and "already exists" in err
    assert len(store.progress("toy-study")) == 3
    code, out, _ = _run(capsys, "invite", "toy-study", "--store", db, "--participants", "2", "--tokens-only")
    assert code == 0 and len(out.split()) == 2 and len(store.progress("toy-study")) == 5


def test_report_formats(created, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, _ = created
    _vote_everything(StudyStore(db), tokens)
    code, out, _ = _run(capsys, "report", "toy-study", "--store", db, "--format", "csv", "--bootstrap", "200")
    assert code == 0
    table = pd.read_csv(pd.io.common.StringIO(out))
    assert {"method", "criterion", "votes", "share", "ci_low", "ci_high"} <= set(table.columns)
    assert len(table) == 3 * 2  # methods x criteria
    beta = table[(table["method"] == "beta") & (table["criterion"] == "perceptual")].iloc[0]
    assert beta["votes"] == 9 and beta["share"] == 1.0
    code, out, _ = _run(capsys, "report", "toy-study", "--store", db, "--format", "json", "--bootstrap", "50")
    payload = json.loads(out)
    assert payload["meta"]["chain_ok"] is True and payload["meta"]["votes"] == 18
    md_path, png_path = tmp_path / "r" / "report.md", tmp_path / "r" / "fig.png"
    code, out, err = _run(capsys, "report", "toy-study", "--store", db, "--format", "markdown", "--bootstrap", "50",
                          "--out", str(md_path), "--plot", str(png_path))  # fmt: skip
    assert code == 0 and out == "", err
    assert "| beta | perceptual | 9 | 9 | 100 |" in md_path.read_text()
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_verify_exit_status_and_tamper(created, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, _ = created
    _vote_everything(StudyStore(db), tokens)
    code, out, _ = _run(capsys, "verify", "toy-study", "--store", db)
    assert code == 0 and out.startswith("ok: 18 votes, head ")
    head = out.split()[-1]
    code, _, _ = _run(capsys, "verify", "toy-study", "--store", db, "--expect-head", head)
    assert code == 0
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER study_votes_no_update")
        raw.execute("UPDATE study_votes SET voted_at = '2020-01-01T00:00:00.000000+00:00' WHERE seq = 3")
    code, out, _ = _run(capsys, "verify", "toy-study", "--store", db)
    assert code == 1 and "FAILED" in out and "seq 3" in out


def test_export_csv_and_parquet(created, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, _ = created
    _vote_everything(StudyStore(db), tokens)
    csv_path = tmp_path / "out" / "votes.csv"
    code, out, _ = _run(capsys, "export", "toy-study", "--store", db, "--out", str(csv_path))
    assert code == 0 and "18 votes" in out
    frame = pd.read_csv(csv_path)
    assert len(frame) == 18 and {"participant", "choice", "shown", "row_hash", "dwell_s"} <= set(frame.columns)
    definition = json.loads((tmp_path / "out" / "votes.study.json").read_text())
    assert definition["study"]["name"] == "toy-study"
    pq = tmp_path / "out" / "votes.parquet"
    code, _, _ = _run(capsys, "export", "toy-study", "--store", db, "--out", str(pq))
    assert code == 0 and pd.read_parquet(pq)["row_hash"].tolist() == frame["row_hash"].tolist()


def test_status(created, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, _ = created
    _vote_everything(StudyStore(db), tokens[:1])
    code, out, _ = _run(capsys, "status", "toy-study", "--store", db)
    assert code == 0 and "1/3 participants complete, 6 votes" in out


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_study_files) -> None:
    db = str(tmp_path / "v.sqlite")
    code, _, err = _run(capsys, "report", "missing", "--store", db)
    assert code == 2 and err.startswith("error: no study named 'missing'") and "Traceback" not in err
    path = make_study_files(tmp_path)
    (tmp_path / "beta" / "img_01.png").unlink()
    code, _, err = _run(capsys, "create", str(path), "--store", db)
    assert code == 2 and "method 'beta'" in err and "img_01" in err


def test_help_has_examples() -> None:
    for verb in ("create", "report", "verify", "export", "serve"):
        res = subprocess.run([sys.executable, "-m", "screensr.cli", "board", "study", verb, "--help"],
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert "example" in res.stdout and "screensr board study" in res.stdout


def test_help_yaml_example_is_a_valid_definition() -> None:
    import textwrap

    import yaml

    from leaderboard.study.config import config_from_dict

    res = subprocess.run([sys.executable, "-m", "screensr.cli", "board", "study", "create", "--help"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    block = res.stdout.split("study.yaml:\n", 1)[1].split("\n\n", 1)[0]
    config = config_from_dict(yaml.safe_load(textwrap.dedent(block)), base=Path("/srv"))
    assert config.methods["Bicubic"] == "method:bicubic" and len(config.criteria) == 2
    assert config.votes_per_participant == 30 and config.gold.images == ("img_001",)


def test_subset_study_reports_luce_strengths(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_study_files) -> None:
    path = make_study_files(tmp_path, methods=("a1", "a2", "a3", "a4"), n_images=4, candidates_per_trial=2)
    db = str(tmp_path / "v.sqlite")
    code, out, _ = _run(capsys, "create", str(path), "--store", db, "--participants", "6", "--tokens-only")
    store = StudyStore(db)
    rank = {"a1": 0, "a2": 1, "a3": 2, "a4": 3}  # every participant prefers the lower-numbered method
    for token in out.split():
        p = store.participant(token)
        while (view := store.next_trial(p)) is not None:
            assert len(view.shown) == 2
            best = min(range(2), key=lambda i: rank[view.shown[i]])
            for key in ("perceptual", "consistency"):
                store.record_vote(p, view.assignment_id, key, best)
    code, out, _ = _run(capsys, "report", "toy-study", "--store", db, "--format", "json", "--bootstrap", "50")
    payload = json.loads(out)
    strengths = [r for r in payload["strengths"] if r["criterion"] == "perceptual"]
    order = [r["method"] for r in sorted(strengths, key=lambda r: -r["strength"])]
    assert order == ["a1", "a2", "a3", "a4"]
    shown = {r["method"]: r["shown"] for r in payload["votes"] if r["criterion"] == "perceptual"}
    assert sum(shown.values()) == 6 * 4 * 2 and max(shown.values()) - min(shown.values()) <= 1


def test_serve_runs_the_voter_app_closed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, make_study_files) -> None:  # fmt: skip
    """``serve`` execs Streamlit on the voter-only app with the options that keep it closed, and
    without the results store in its environment."""
    import os

    db = tmp_path / "votes.sqlite"
    StudyStore(db).create_study(load_study(make_study_files(tmp_path)))
    monkeypatch.setenv("SCREENSR_STORE", "sqlite:///results.db")
    seen: dict[str, object] = {}

    def fake_exec(path: str, argv: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, argv=argv, env=env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_exec)
    with pytest.raises(SystemExit):
        main(["board", "study", "serve", "--store", str(db), "--port", "8612", "-S", "server.baseUrlPath=vote"])
    argv = seen["argv"]
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("leaderboard/study/voter/app.py")
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert options["--client.toolbarMode"] == "minimal" and options["--client.showErrorDetails"] == "none"
    assert options["--client.showSidebarNavigation"] == "false" and options["--server.enableXsrfProtection"] == "true"
    assert options["--server.port"] == "8612" and options["--server.baseUrlPath"] == "vote"
    env = seen["env"]
    assert env["SCREENSR_STUDY_STORE"] == f"sqlite:///{db}" and "SCREENSR_STORE" not in env
    assert "serving the voting app" in capsys.readouterr().err


def test_serve_refuses_options_that_open_the_app(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "serve", "--store", str(tmp_path / "v.sqlite"), "-S", "client.toolbarMode=developer")
    assert code == 2 and "always runs with client.toolbarMode=minimal" in err and "Traceback" not in err
    code, out, _ = _run(capsys, "serve", "--store", str(tmp_path / "v.sqlite"), "--dry-run")
    assert code == 0 and "SCREENSR_STUDY_STORE=sqlite:///" in out and "voter/app.py" in out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_an_export_alone_rebuilds_the_report(created, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             suffix: str) -> None:  # fmt: skip
    """The export holds every judgement, the study definition and the chain head: its report equals
    the store's (same tables, same numbers)."""
    db, tokens, _ = created
    _vote_everything(StudyStore(db), tokens)
    out = tmp_path / "exp" / f"votes{suffix}"
    code, msg, _ = _run(capsys, "export", "toy-study", "--store", db, "--out", str(out))
    assert code == 0 and "18 votes" in msg
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = json.loads(pq.read_schema(out).metadata[b"screensr.study"])
        assert meta["head_hash"] == StudyStore(db).verify("toy-study").head_hash and meta["study"]["name"] == "toy-study"
        (out.parent / "votes.study.json").unlink()  # the Parquet file alone suffices
    args = ["--format", "json", "--bootstrap", "100", "--fit-bootstrap", "20"]
    code, from_store, _ = _run(capsys, "report", "toy-study", "--store", db, *args)
    code2, from_export, _ = _run(capsys, "report", "--from-export", str(out), *args)
    assert code == code2 == 0
    a, b = json.loads(from_store), json.loads(from_export)
    for table in ("votes", "scores", "uniformity", "pairwise", "agreement", "participants"):
        assert a[table] == b[table], table
    assert b["meta"]["head_hash"] == a["meta"]["head_hash"] and b["meta"]["chain_ok"] is True


def test_report_exclusions_show_both_results(created, capsys: pytest.CaptureFixture[str]) -> None:
    db, tokens, _ = created
    store = StudyStore(db)
    _vote_everything(store, tokens)  # every vote about 0 s after serving: all three are too fast
    code, out, _ = _run(capsys, "report", "toy-study", "--store", db, "--exclude", "too-fast", "--bootstrap", "50",
                        "--fit-bootstrap", "10")  # fmt: skip
    assert code == 0 and "## Exclusions (too-fast): 3 participant(s) excluded" in out
    assert "| 0 | too-fast |" in out and "## Without exclusions" in out
    code, out, _ = _run(capsys, "report", "toy-study", "--store", db, "--format", "csv", "--exclude", "too-fast",
                        "--bootstrap", "50", "--fit-bootstrap", "10")  # fmt: skip
    assert (pd.read_csv(pd.io.common.StringIO(out))["n"] == 0).all(), "the main table leaves excluded votes out"
    code, _, err = _run(capsys, "report", "toy-study", "--store", db, "--exclude", "too-fsat")
    assert code == 2 and "did you mean 'too-fast'" in err and "Traceback" not in err
    code, _, err = _run(capsys, "report", "--store", db)
    assert code == 2 and "one of the two" in err
