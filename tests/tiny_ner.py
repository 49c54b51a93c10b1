"""Tiny ner setup: planted entities in filler text, a tiny BERT whose tokenizer knows their words.

Sentences mix filler words with person names (one or two words) and places (one or two words); the tags are
IOB2. A model that learns finds them all; one that does not finds none, so the tests' F1 thresholds can fail.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

PEOPLE = [["anna"], ["boris"], ["carla", "mendez"], ["dmitri"], ["elena", "vogel"], ["farid"], ["greta", "lund"],
          ["hugo"]]
PLACES = [["paris"], ["lagos"], ["new", "york"], ["oslo"], ["san", "diego"], ["kyoto"], ["rio"], ["cape", "town"]]
FILLER = ["we", "met", "in", "today", "with", "and", "the", "visited", "after", "lunch", "went", "to", "saw",
          "quickly", "then", "home", "later", "friends", "from", "at"]
SAMPLE_INPUTS = ["anna went to paris", "", "we met boris in new york today", "the " * 200 + "carla mendez"]


def ner_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` sentences: ``{"tokens": [...], "ner_tags": [...]}`` with 1-3 planted entities each."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(1, 3)):
            for _ in range(rng.randint(1, 4)):
                tokens.append(rng.choice(FILLER))
                tags.append("O")
            kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES)])
            words = rng.choice(names)
            tokens += words
            tags += [("B-" if i == 0 else "I-") + kind for i in range(len(words))]
        tokens.append(rng.choice(FILLER))
        tags.append("O")
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_conll(path: Path, rows: list[dict], sep: str = " ") -> Path:
    path.write_text("".join("".join(f"{t}{sep}{g}\n" for t, g in zip(r["tokens"], r["ner_tags"])) + "\n"
                            for r in rows))
    return path


def ner_data(folder: Path) -> Path:
    """train/validation/test jsonl files of planted entities in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", ner_rows(240, seed=1))
    write_jsonl(folder / "validation.jsonl", ner_rows(40, seed=2))
    write_jsonl(folder / "test.jsonl", ner_rows(60, seed=3))
    return folder


def tiny_ner_model(out: Path) -> Path:
    """A 2-layer, width-32 BERT with a WordPiece tokenizer trained on the planted vocabulary (cased words kept
    lowercase, as in the data)."""
    from nlpkit.testing import tiny_bert

    words = [w for group in PEOPLE + PLACES for w in group] + FILLER
    corpus = [" ".join(r["tokens"]) for r in ner_rows(300)] + [" ".join(words)]
    return tiny_bert(out, corpus, vocab_size=160)


def ner_overrides(model: Path, data: Path, out: Path, **extra: object) -> dict:
    """Config for a quick tiny ner run."""
    cfg = {"model": str(model), "data.source": str(data), "output_dir": str(out), "trackers": [],
           "train.batch_size": 8, "train.eval_batch_size": 16, "train.lr": 5e-3, "train.epochs": 1.0,
           "train.log_every": 5, "train.warmup_ratio": 0.0}
    cfg.update(extra)
    return cfg


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    return ner_overrides(tiny_ner_model(tmp_path / "tiny-ner-bert"), ner_data(tmp_path / "ner-data"), tmp_path / "run",
                         **{"train.max_steps": 6})
