"""Scoring and predicting a user's own files: ``nlpkit evaluate --data`` and ``nlpkit predict --input``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv

import nlpkit
from nlpkit.cli import console_main


@pytest.fixture(scope="module")
def run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{
        "train.epochs": 4.0}))
    assert report["test"]["accuracy"] >= 0.9
    return report["run_dir"]


def _rows(n: int, seed: int) -> pd.DataFrame:
    rows = sentiment_rows(n, seed=seed)
    return pd.DataFrame({"id": [f"row-{i}" for i in range(n)], "review": [t for t, _ in rows],
                         "stars": [5 if lab == "positive" else 1 for _, lab in rows]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_predict_file_keeps_every_row_in_order_with_its_columns(run: str, tmp_path: Path, suffix: str,
                                                               capsys: pytest.CaptureFixture) -> None:
    df = _rows(10_000, seed=21)
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    {".csv": lambda: df.to_csv(src, index=False), ".parquet": lambda: df.to_parquet(src),
     ".jsonl": lambda: df.to_json(src, orient="records", lines=True)}[suffix]()
    console_main(["predict", run, "--input", str(src), "--output", str(dst), "--text-column", "review",
                  "--chunk-rows", "3000", "--batch-size", "128"])
    assert "Predicted 10000 rows" in capsys.readouterr().out
    got = {".csv": pd.read_csv, ".parquet": pd.read_parquet,
           ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](dst)
    assert list(got.columns) == ["id", "review", "stars", "label", "score"]
    assert got["id"].tolist() == df["id"].tolist() and got["review"].tolist() == df["review"].tolist()
    # the predictions are the pipeline's, row for row (spot-check a slice across a chunk boundary)
    pipe = nlpkit.pipeline(run, device="cpu")
    expected = pipe(df["review"].tolist()[2990:3010])
    assert got["label"].tolist()[2990:3010] == [e["label"] for e in expected]
    # and they are right: the planted words decide the label
    agree = ((got["label"] == "positive") == (got["stars"] == 5)).mean()
    assert agree >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name]), "no temporary left behind"


def test_a_killed_prediction_leaves_no_output_under_the_final_name(run: str, tmp_path: Path) -> None:
    df = _rows(20_000, seed=3)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    df.to_csv(src, index=False)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen([sys.executable, "-m", "nlpkit.cli", "predict", run, "--input", str(src), "--output",
                             str(dst), "--text-column", "review", "--chunk-rows", "200", "--batch-size", "8"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.csv.*.partial")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert list(tmp_path.glob(".out.csv.*.partial")), "the prediction never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not dst.exists(), "a killed run must not leave a truncated file under the final name"


def test_evaluate_on_another_file_scores_it_whole_and_writes_a_report(run: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    data = write_csv(tmp_path / "reviews.csv", [(t, lab) for t, lab in sentiment_rows(37, seed=99)],
                     header=("review", "verdict"))
    overrides = ["data.text_column=review", "data.label_column=verdict"]
    console_main(["evaluate", run, "--data", str(data), "--out", str(tmp_path / "eval"), *overrides])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Scored 37 rows"), "a single file is scored whole, not a held-out slice"
    assert lines[-2].strip().startswith("accuracy:"), "the main metric comes last"
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    python = nlpkit.evaluate(run, data=str(data), **{"data.text_column": "review", "data.label_column": "verdict"})
    assert report["test"]["accuracy"] == pytest.approx(python["accuracy"]) and python["samples"] == 37
    assert (tmp_path / "eval" / "report.md").exists() and (tmp_path / "eval" / "confusion_matrix.png").exists()


def test_evaluate_names_labels_the_model_does_not_know(run: str, tmp_path: Path) -> None:
    rows = sentiment_rows(6, seed=1) + [("so so film", "neutral")]
    data = write_csv(tmp_path / "three.csv", rows)
    out = subprocess.run([sys.executable, "-m", "nlpkit.cli", "evaluate", run, "--data", str(data)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "neutral" in out.stderr and "Traceback" not in out.stderr
