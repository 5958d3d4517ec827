"""The local leaderboard: its rows, the 2019 public-board rank (inception against the photos only), the DVC
experiments it gathers (queued and --temp ones included), each submission once, and its command."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import leaderboard as L

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "kaggle-2019-scored-submissions.csv"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dvc_exp_show.json"  # real output of dvc 3.67, trimmed


def metrics(network="inception", mifid=50.0, memorizer=False, frechet="eigh", reference="photos",
            sha="") -> dict:
    return {"network": network, "reference": reference, "reference_images": 20579, "n_images": 10_000, "eps": 0.1,
            "fid": mifid, "frechet": frechet, "distance": 0.05 if memorizer else 0.25, "mifid": mifid,
            "memorizer": memorizer, "submission_sha256": sha}


def table(path: Path) -> list[list[str]]:
    """The markdown table's data rows, as lists of cells."""
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in path.read_text().splitlines()
            if line.startswith("| ") and line[2].isdigit()]


# --------------------------------------------------------------------------------------------- the 2019 board


def test_rank_among_the_2019_real_generative_models():
    assert L.kaggle_rank(1.0) == (1, 498)  # better than the best
    assert L.kaggle_rank(12.46328428178144) == (1, 498)  # a tie takes the better place
    assert L.kaggle_rank(1e6) == (498, 498)  # worse than all
    assert L.rank_text(5.0) == "would rank 1 of 498"
    assert L.kaggle_rank(61.0)[0] < 249 < L.kaggle_rank(62.0)[0]  # the median sits between
    scores = np.array([10.0, 20.0, 30.0])
    ranks = [L.kaggle_rank(x, scores) for x in (5, 10, 15, 20, 25, 31)]
    assert ranks == [(1, 4), (1, 4), (2, 4), (2, 4), (3, 4), (4, 4)]


def test_shipped_public_scores_match_the_competition_facts():
    scores = L.public_nonmem_scores()
    assert len(scores) == 497 and (np.diff(scores) >= 0).all()
    best, median = L.public_board_summary()
    assert round(best, 2) == 12.46 and round(median, 1) == 61.6


def test_shipped_public_scores_are_the_non_mem_rows_of_the_released_file():
    if not ANCHORS.is_file():
        pytest.skip(f"{ANCHORS} is not here")
    with open(ANCHORS, newline="") as fh:
        source = sorted(float(r["public_score"]) for r in csv.DictReader(fh) if r["labels"] == "non-mem")
    np.testing.assert_array_equal(L.public_nonmem_scores(), np.array(source))


def test_only_inception_against_the_photos_gets_a_2019_rank():
    assert L.make_row(metrics())["kaggle_2019_rank"] == L.rank_text(50.0)
    assert L.make_row(metrics(reference="crops"))["kaggle_2019_rank"] == L.NOT_COMPARABLE_CROPS
    assert L.make_row(metrics("standin"))["kaggle_2019_rank"] == L.NOT_COMPARABLE
    assert L.make_row(metrics("standin", reference="crops"))["kaggle_2019_rank"] == L.NOT_COMPARABLE
    row = L.make_row(metrics(reference="crops"))
    assert row["comparable_to_kaggle"] == "false" and row["reference"] == "crops"


def test_metrics_of_older_versions_were_against_the_crops():
    old = {k: v for k, v in metrics().items() if k not in ("reference", "reference_images", "submission_sha256",
                                                            "frechet")}
    row = L.make_row(old)
    assert row["reference"] == "crops" and row["reference_images"] == "" and row["submission_sha256"] == ""
    assert row["frechet"] == "sqrtm" and row["kaggle_2019_rank"] == L.NOT_COMPARABLE_CROPS


# ------------------------------------------------------------------------------------------------- the files


def test_rows_markdown_and_plot(tmp_path):
    ck = {"model": "biggan", "step": 1200, "total_steps": 5000, "model_options": {"z_dim": 120, "g_width": 8},
          "train_config": {"loss": "bce", "batch_size": 32, "augment": "", "seed": 0}}
    model, params = L.describe_checkpoint(ck)
    assert model == "biggan"
    assert params == "step 1200/5000; z_dim=120 g_width=8; loss='bce' batch_size=32 augment=''"
    # a checkpoint of a recipe names it first (the train stage keeps params.yaml's recipe in it)
    assert L.describe_checkpoint(dict(ck, extra={"recipe": "ours"}))[1].startswith("recipe ours; step 1200/5000")
    L.update_leaderboard(tmp_path, L.make_row(metrics("standin", 0.5), model, params))
    L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=80.0, reference="crops")))
    L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=80.0)))
    paths = L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0, frechet="sqrtm")))
    _, rows = L.read_rows(paths["csv"])
    assert [r["kaggle_2019_rank"] for r in rows] == [L.NOT_COMPARABLE, L.NOT_COMPARABLE_CROPS, L.rank_text(80.0),
                                                     L.rank_text(40.0)]
    cells = table(paths["md"])
    # inception + photos first, by MiFID; then the rest by MiFID, however low the stand-in's number
    assert [c[1] for c in cells] == ["40.00", "80.00", "0.50", "80.00"]
    assert cells[0][2] == "40.00 (sqrtm)" and cells[1][2] == "80.00"  # eigh, the default, is not repeated
    assert [c[5] for c in cells] == ["photos (20579)", "photos (20579)", "photos (20579)", "crops (20579)"]
    assert "would rank" in cells[0][6] and cells[3][6] == "n/a" and "not comparable to Kaggle" in cells[3][4]
    assert cells[0][9] == L.SCORE_RUN
    assert "Rows against the `crops` reference and `standin` rows are NOT comparable" in paths["md"].read_text()
    assert paths["png"].read_bytes().startswith(b"\x89PNG")


def test_a_damaged_leaderboard_row_neither_crashes_nor_half_updates(tmp_path):
    # a row cut short by hand (no network, no MiFID) and one with a cell too many: shown as "?", not plotted
    header = ",".join(L.COLUMNS)
    (tmp_path / "leaderboard.csv").write_text(f"{header}\n1,2\n{','.join(['x'] * (len(L.COLUMNS) + 1))}\n")
    paths = L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0)))
    _, rows = L.read_rows(paths["csv"])
    assert len(rows) == 3 and rows[0][L.COLUMNS[0]] == "1" and rows[2]["mifid"] == rows[2]["fid"]
    assert paths["md"].read_text().count("| ? |") >= 2 and paths["png"].read_bytes().startswith(b"\x89PNG")


def test_an_unreadable_csv_is_a_note_for_the_command_and_an_error_for_the_score_stage(tmp_path, capsys):
    damaged = b"time,mifid\n\xff\xfe,1\n"  # not UTF-8: no row can be read from it
    (tmp_path / "leaderboard.csv").write_bytes(damaged)
    rows, notes, counts = L.board_rows(tmp_path, experiments=False)
    assert rows == [] and counts["score_runs"] == 0
    assert len(notes) == 1 and "not a readable leaderboard CSV" in notes[0]
    assert L.main(["--dir", str(tmp_path), "--no-experiments"]) == 0  # the board is still rendered, with the note
    assert "note: score runs: none shown" in capsys.readouterr().err
    assert "not a readable leaderboard CSV" in (tmp_path / "leaderboard.md").read_text()
    # the score stage guards its writes with `except OSError`: a one-line error there, and the file is kept
    with pytest.raises(OSError, match="repair it or move it aside"):
        L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0)), experiments=False)
    assert (tmp_path / "leaderboard.csv").read_bytes() == damaged


def test_a_render_failure_leaves_the_leaderboard_files_as_they_were(tmp_path, monkeypatch):
    paths = L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0)))
    before = {k: p.read_bytes() for k, p in paths.items()}

    def broken(rows):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(L, "render_plot", broken)
    with pytest.raises(RuntimeError):
        L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=30.0)))
    assert {k: p.read_bytes() for k, p in paths.items()} == before


# ------------------------------------------------------------------------------------------ DVC experiments


def test_rows_of_a_real_dvc_exp_show():
    """The workspace, the baseline commit and two finished experiments have scores; a queued experiment has
    none and a failed one carries an error: neither is a row."""
    rows = L.experiment_rows(json.loads(FIXTURE.read_text()))
    assert [r["source"] for r in rows] == ["workspace", "commit fca8657 (master)", "experiment zippy-chin",
                                           "experiment girly-drum"]
    assert [r["mifid"] for r in rows] == ["85.0", "81.0", "83.0", "82.0"]  # 80 + the seed of each
    assert rows[2]["time"] == "2026-12-05T09:48:35" and rows[0]["time"] == ""
    assert all(r["model"] == "dcgan" and r["reference"] == "photos" and r["submission_sha256"] for r in rows)


def test_the_same_score_is_one_row_and_the_named_one_stays():
    run = L.make_row(metrics(sha="a" * 64), when="2026-12-05T10:00:00")
    workspace = {**L.make_row(metrics(sha="a" * 64), source="workspace"), "time": ""}
    experiment = L.make_row(metrics(sha="a" * 64), source="experiment tidy-dog", when="")
    other_eps = {**L.make_row(metrics(sha="a" * 64)), "eps": "0.25"}  # scored another way: its own row
    no_hash = L.make_row(metrics())  # an older row: never merged
    merged, dropped = L.merge_rows([run, workspace, experiment, other_eps, no_hash, dict(no_hash)])
    assert dropped == 2 and len(merged) == 4
    assert merged[0]["source"] == "experiment tidy-dog" and merged[0]["time"] == "2026-12-05T10:00:00"
    assert merged[1]["eps"] == "0.25"


def test_without_dvc_the_board_is_the_csv_and_says_why(tmp_path, monkeypatch, capsys):
    L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0)))
    (tmp_path / ".dvc").mkdir()  # a DVC project whose dvc cannot run
    monkeypatch.setattr(L.sys, "executable", str(tmp_path / "no-python"))
    rows, notes, counts = L.board_rows(tmp_path)
    assert len(rows) == 1 and counts == {"score_runs": 1, "experiments": 0, "merged": 0}
    assert len(notes) == 1 and "cannot run dvc" in notes[0]
    assert L.main(["--dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "note: experiments: none shown (cannot run dvc" in captured.err
    assert "leaderboard: 1 rows (1 score runs in leaderboard.csv, 0 from DVC experiments" in captured.out
    assert "cannot run dvc" in (tmp_path / "leaderboard.md").read_text()


def test_outside_a_dvc_project_no_dvc_is_run(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "dvc_exp_show", lambda *a: pytest.fail("dvc must not run outside a DVC project"))
    L.update_leaderboard(tmp_path, L.make_row(metrics(mifid=40.0)))
    _, notes, _ = L.board_rows(tmp_path)
    assert "not inside a DVC project" in notes[0]


def test_the_command_renders_and_has_help(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipeline.leaderboard", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--no-experiments" in out.stdout and "--all-commits" in out.stdout
    assert L.main(["--dir", str(tmp_path), "--no-experiments"]) == 0  # nothing scored yet: an empty board
    assert table(tmp_path / "leaderboard.md") == [] and "# Local leaderboard" in (tmp_path / "leaderboard.md").read_text()
    assert (tmp_path / "leaderboard.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_sweep_of_queued_experiments_is_on_the_board(tmp_path):
    """dvc repro, then two queued experiments run by `dvc queue start` in folders of their own: the board
    has the baseline and both experiments, ranked, although no score ran in the workspace for them. Then a
    stage that renders the board itself, as the score stage does, finds every experiment although
    `dvc repro` holds the project's lock (under which `dvc status` fails)."""
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists() or shutil.which("git") is None:
        pytest.skip("dvc or git is not installed here")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DVC_"))},
           "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": f"{dvc.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    (repo / "params.yaml").write_text("score:\n  seed: 1\n")
    (repo / "write.py").write_text(
        "import hashlib, json, os, yaml\n"
        "s = yaml.safe_load(open('params.yaml'))['score']['seed']\n"
        "os.makedirs('metrics', exist_ok=True)\n"
        "json.dump({'network': 'standin', 'reference': 'photos', 'reference_images': 9, 'n_images': 10, 'eps': 0.1,"
        " 'fid': 90.0 - s, 'frechet': 'eigh', 'distance': 0.3, 'distance_thresholded': 1.0, 'mifid': 90.0 - s,"
        " 'memorizer': False, 'submission_sha256': hashlib.sha256(str(s).encode()).hexdigest(),"
        " 'model': 'dcgan', 'params': f'seed {s}'}, open('metrics/score.json', 'w'))\n"
        "if os.environ.get('BOARD'):  # the score stage's own call, under the lock of dvc repro\n"
        "    import subprocess, sys\n"
        "    from pipeline import leaderboard as L\n"
        "    busy = subprocess.run([sys.executable, '-m', 'dvc', 'status'], capture_output=True, text=True)\n"
        "    L.update_leaderboard('inside', L.make_row(json.load(open('metrics/score.json')), 'dcgan', 'x'))\n"
        "    open('inside/status.txt', 'w').write(f'{busy.returncode} {busy.stderr}')\n")

    def sh(*cmd, **extra):
        out = subprocess.run(cmd, cwd=repo, env={**env, **extra}, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    sh("git", "init", "-q")
    sh("git", "config", "user.email", "t@example.com")
    sh("git", "config", "user.name", "t")
    sh("dvc", "init", "-q")
    sh("dvc", "stage", "add", "-q", "-n", "score", "-p", "score", "-d", "write.py", "-M", "metrics/score.json",
       "python write.py")
    sh("dvc", "repro", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "baseline")
    for seed in (5, 9):
        sh("dvc", "exp", "run", "-q", "--queue", "-S", f"score.seed={seed}")
    sh("dvc", "queue", "start", "-q")
    for _ in range(120):
        if sh("dvc", "queue", "status").count("Success") == 2:
            break
        time.sleep(1)
    board = repo / "submissions"
    board.mkdir()
    rows, notes, counts = L.board_rows(board)
    assert not notes and counts["experiments"] == 4  # workspace, the commit, two experiments
    assert len(rows) == 3 and counts["merged"] == 1  # the workspace is the committed baseline
    assert sorted(float(r["mifid"]) for r in rows) == [81.0, 85.0, 89.0]
    assert L.main(["--dir", str(board)]) == 0
    cells = table(board / "leaderboard.md")
    assert [c[1] for c in cells] == ["81.00", "85.00", "89.00"] and cells[2][9].startswith("commit ")
    assert all(c[9].startswith("experiment ") for c in cells[:2])
    sh("dvc", "repro", "-q", "-f", BOARD="1")  # the baseline again, its stage rendering the board
    status = (repo / "inside" / "status.txt").read_text()
    assert not status.startswith("0") and "busy" in status  # the lock was held while the stage asked DVC
    inside = (repo / "inside" / "leaderboard.md").read_text()
    assert "none shown" not in inside and inside.count("| experiment ") == 2
    assert [c[1] for c in table(repo / "inside" / "leaderboard.md")] == ["81.00", "85.00", "89.00"]
