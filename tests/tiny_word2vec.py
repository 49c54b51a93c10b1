"""Tiny word2vec setup: a planted-topic corpus written as a .txt file (one text per line)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

# Words of a group only ever appear together in a sentence, so each word's nearest neighbours are its group.
GROUPS = {
    "animals": ["cat", "dog", "mouse", "horse", "cow", "sheep"],
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango"],
    "vehicles": ["car", "bus", "truck", "train", "bike", "boat"],
    "colours": ["red", "green", "blue", "yellow", "purple", "orange"],
}
FILLER = ["the", "a", "and", "of", "is", "was", "with", "very", "some", "many"]
# Planted pairs: each pair always appears side by side, and neither word appears anywhere else.
PAIRS = [("alpha", "omega"), ("salt", "pepper"), ("bread", "butter")]

SAMPLE_INPUTS = ["cat", "Apple", "bus"]


def planted_texts(n: int = 600, seed: int = 0) -> list[str]:
    """Texts of two sentences each: topic words plus filler; every tenth text also holds a planted pair."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        sentences = []
        for _ in range(2):
            words = rng.sample(GROUPS[rng.choice(list(GROUPS))], 4) + rng.sample(FILLER, 3)
            rng.shuffle(words)
            if i % 10 == 0:
                a, b = rng.choice(PAIRS)
                pos = rng.randint(0, len(words))
                words[pos:pos] = [a, b]
            sentences.append(" ".join(words).capitalize() + ".")
        texts.append(" ".join(sentences))
    return texts


def write_corpus_file(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def w2v_overrides(data: Path, out: Path, **extra: object) -> dict:
    """A quick tiny word2vec run: small vectors, min_count 1, no reference vectors (GloVe takes ~20 s)."""
    cfg = {"data.source": str(data), "output_dir": str(out), "reference_vectors": "",
           "w2v.vector_size": 16, "w2v.min_count": 1, "w2v.epochs": 30, "w2v.window": 4, "w2v.sample": 0.0,
           "w2v.workers": 2, "eval.probe_words": ["cat", "apple", "alpha"], "eval.plot_words": 30}
    cfg.update(extra)
    return cfg


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    data = write_corpus_file(tmp_path / "corpus.txt", planted_texts(300))
    return w2v_overrides(data, tmp_path / "run", **{"w2v.epochs": 5})
