"""Sentiment on the real catalog assets (minilm-l6 on rotten_tomatoes). Slow: fetches and fine-tunes."""

from __future__ import annotations

from pathlib import Path

import pytest

import nlpkit


@pytest.mark.slow
def test_minilm_learns_rotten_tomatoes_from_2000_texts(tmp_path: Path) -> None:
    report = nlpkit.train("sentiment", output_dir=str(tmp_path / "run"), trackers=[],
                          **{"data.max_train_samples": 2000, "data.max_eval_samples": 400, "train.epochs": 1.0})
    assert report["data_sizes"]["train"] == 2000
    assert report["test"]["accuracy"] >= 0.70  # majority class is 0.585
    clf = nlpkit.pipeline(report["run_dir"], device="cpu")
    assert clf("a masterpiece: moving, funny and beautifully acted")["label"] == "positive"
    assert clf("a tedious, clumsy mess that wastes its cast")["label"] == "negative"


@pytest.mark.full_run
def test_default_run_reaches_the_target(tmp_path: Path) -> None:
    """The README's main command on its defaults: test accuracy >= 0.82."""
    report = nlpkit.train("sentiment", output_dir=str(tmp_path / "run"))
    assert report["test"]["accuracy"] >= 0.82
