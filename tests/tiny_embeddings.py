"""Tiny embeddings setup: planted pairs that only a trained encoder can match, and the contract test's config.

Each pair is one filler sentence said twice, with a planted word: a positive word in the anchor
(``POSITIVE[i]``) and its partner negative word in the passage (``NEGATIVE[i]``). Every filler sentence appears
with all eight partners in the split, so a query's own passage competes with seven passages that share all its
filler words and differ only in the planted word: an untrained encoder cannot tell them apart (recall@1 near
1/8), one that learned the eight word pairs retrieves its passage first.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE

SAMPLE_INPUTS = ["a great and moving film", "boring", "", "the plot was dull at times " * 30]


def planted_pairs(fillers: int, seed: int) -> list[dict]:
    """``fillers`` filler sentences x the 8 planted word pairs: anchor, positive and a hard negative (the same
    filler with another pair's negative word)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(fillers):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        at = rng.randint(0, len(words))
        for i, (pos, neg) in enumerate(zip(POSITIVE, NEGATIVE)):
            other = NEGATIVE[(i + rng.randint(1, len(NEGATIVE) - 1)) % len(NEGATIVE)]
            rows.append({"anchor": " ".join(words[:at] + [pos] + words[at:]),
                         "positive": " ".join(words[:at] + [neg] + words[at:]),
                         "negative": " ".join(words[:at] + [other] + words[at:])})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def planted_data(folder: Path) -> Path:
    """train (30 fillers: 240 pairs), validation (4: 32) and test (5: 40) jsonl files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", planted_pairs(30, seed=1))
    write_jsonl(folder / "validation.jsonl", planted_pairs(4, seed=2))
    write_jsonl(folder / "test.jsonl", planted_pairs(5, seed=3))
    return folder


def embeddings_overrides(tiny_bert: Path, data: Path, out: Path, **extra: object) -> dict:
    """Config of a quick tiny embeddings run."""
    cfg = {"model": str(tiny_bert), "data.source": str(data), "output_dir": str(out), "trackers": [],
           "train.batch_size": 16, "train.eval_batch_size": 32, "train.lr": 3e-3, "train.epochs": 1.0,
           "train.log_every": 5, "train.warmup_ratio": 0.0, "data.max_length": 32}
    cfg.update(extra)
    return cfg


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    return embeddings_overrides(request.getfixturevalue("tiny_bert"), planted_data(tmp_path / "pairs"),
                                tmp_path / "run", **{"train.max_steps": 6})
