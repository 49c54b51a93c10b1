"""Tiny text_regression setup (the example plugin in examples/nlpkit-text-regression).

Used by tests/test_plugins.py, which installs the plugin for the test; also by the shared contract test when
the example is installed in the environment (``pip install -e examples/nlpkit-text-regression``).

Each text's score is (planted positive words) - (planted negative words), from -3 to 3, amid filler words: the
model has to count, and the test split's rmse shows whether it learned.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, write_csv

SAMPLE_INPUTS = ["a great and wonderful film", "boring", "", "the plot was dull at times " * 30]


def regression_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` (text, score) rows: 0-3 positive and 0-3 negative words inserted among 2-8 filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 8))]
        for w in rng.sample(POSITIVE, pos) + rng.sample(NEGATIVE, neg):
            words.insert(rng.randint(0, len(words)), w)
        rows.append((" ".join(words), pos - neg))
    return rows


def write_data(folder: Path) -> Path:
    """train/validation/test csv files (columns text, score) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 320, 1), ("validation", 40, 2), ("test", 80, 3)):
        write_csv(folder / f"{split}.csv", regression_rows(n, seed), ("text", "score"))
    return folder


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    """100 updates of the tiny BERT (about 4 s on one CPU thread): enough to fall far below the mean's rmse."""
    return {"model": str(request.getfixturevalue("tiny_bert")), "data.source": str(write_data(tmp_path / "data")),
            "output_dir": str(tmp_path / "run"), "trackers": [], "train.batch_size": 32,
            "train.eval_batch_size": 32, "train.lr": 5e-3, "train.max_steps": 100, "train.eval_every": 50,
            "train.log_every": 10, "train.warmup_ratio": 0.0}
