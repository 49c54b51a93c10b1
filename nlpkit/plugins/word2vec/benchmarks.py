"""Word-vector benchmarks (Google analogies, WordSim353, SimLex-999) scored through nlpkit's evaluate modules.

The benchmark files are the ones gensim ships (:func:`nlpkit.plugins.word2vec.catalog.gensim_benchmark_path`).
The rules follow gensim's ``KeyedVectors.evaluate_word_analogies`` / ``evaluate_word_pairs`` (defaults
``restrict_vocab=300000, case_insensitive=True``): only the ``restrict_vocab`` most frequent words take part,
case is ignored (the most frequent casing of a word wins), an analogy "a : b :: c : ?" is answered with the
3CosAdd nearest word to ``b - a + c`` other than a, b and c, and items with an out-of-vocabulary word are
skipped and counted in the OOV rate. Unlike gensim, which loops over the questions one ``most_similar`` at a
time, the analogies are solved in batches with one matrix product each (about 20x faster on GloVe's 400k
words) and the predicted word of every question is kept, so the per-question predictions can go through the
``word_analogy`` module; ``tests/test_word2vec.py`` checks that the scores equal gensim's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from nlpkit.metrics import compute

__all__ = ["AnalogyQuestion", "benchmark_vectors", "load_analogies", "load_word_pairs", "nearest_neighbours"]

SIMILARITY_BENCHMARKS = ("wordsim353", "simlex999")


@dataclass(frozen=True)
class AnalogyQuestion:
    section: str
    a: str
    b: str
    c: str
    expected: str


@lru_cache(maxsize=4)
def load_analogies(path: str | None = None) -> tuple[AnalogyQuestion, ...]:
    """Questions of a ``questions-words.txt``-style file (``: section`` lines, then ``a b c d`` lines)."""
    from nlpkit.plugins.word2vec.catalog import gensim_benchmark_path

    path = path or str(gensim_benchmark_path("google-analogies"))
    questions: list[AnalogyQuestion] = []
    section = ""
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.startswith(":"):
                section = line[1:].strip()
                continue
            words = line.split()
            if not words:
                continue
            if len(words) != 4:
                raise ValueError(f"{path} line {line_no}: expected 4 words, got {line.strip()!r}")
            questions.append(AnalogyQuestion(section, *(w.lower() for w in words)))
    return tuple(questions)


@lru_cache(maxsize=8)
def load_word_pairs(name_or_path: str) -> tuple[tuple[str, str, float], ...]:
    """``(word1, word2, human score)`` of a tab-separated pairs file (``#`` comment lines skipped)."""
    from nlpkit.plugins.word2vec.catalog import gensim_benchmark_path

    path = str(gensim_benchmark_path(name_or_path)) if name_or_path in SIMILARITY_BENCHMARKS else name_or_path
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                raise ValueError(f"{path} line {line_no}: expected word1<TAB>word2<TAB>score, got {line!r}")
            pairs.append((parts[0].lower(), parts[1].lower(), float(parts[2])))
    return tuple(pairs)


class _Restricted:
    """The ``restrict_vocab`` most frequent words, lowercased (most frequent casing wins), unit-normed."""

    def __init__(self, kv: Any, restrict_vocab: int):
        keys = kv.index_to_key[:restrict_vocab]
        self.keys = keys
        self.index: dict[str, int] = {}
        for i, k in enumerate(keys):
            self.index.setdefault(k.lower(), i)
        self.vectors = np.asarray(kv.get_normed_vectors()[: len(keys)], dtype=np.float32)


def _analogy_predictions(vocab: _Restricted, questions: tuple[AnalogyQuestion, ...],
                         batch_size: int = 128) -> list[str]:
    """The 3CosAdd answer of each question ('' when a word is out of vocabulary)."""
    preds = [""] * len(questions)
    todo = [i for i, q in enumerate(questions)
            if all(w in vocab.index for w in (q.a, q.b, q.c, q.expected))]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        rows = np.array([[vocab.index[w] for w in (questions[i].a, questions[i].b, questions[i].c)]
                         for i in chunk])
        # gensim's most_similar: mean of the unit vectors weighted +1 (b, c) and -1 (a), then unit-normed;
        # normalising does not change the argmax, so b - a + c is enough.
        target = vocab.vectors[rows[:, 1]] - vocab.vectors[rows[:, 0]] + vocab.vectors[rows[:, 2]]
        sims = target @ vocab.vectors.T
        np.put_along_axis(sims, rows, -np.inf, axis=1)  # the question words are never the answer
        best = sims.argmax(axis=1)
        for i, row in zip(chunk, best, strict=True):
            preds[i] = vocab.keys[int(row)].lower()
    return preds


def _pair_similarities(vocab: _Restricted, pairs: tuple[tuple[str, str, float], ...]) -> list[float]:
    out = []
    for w1, w2, _ in pairs:
        if w1 in vocab.index and w2 in vocab.index:
            out.append(float(vocab.vectors[vocab.index[w1]] @ vocab.vectors[vocab.index[w2]]))
        else:
            out.append(math.nan)
    return out


def benchmark_vectors(kv: Any, restrict_vocab: int = 300_000, analogies_path: str | None = None
                      ) -> dict[str, Any]:
    """Every benchmark for the vectors ``kv`` (gensim KeyedVectors), as one flat dict of metrics.

    Keys: ``analogy_accuracy`` (over answered questions, as gensim reports), ``analogy_accuracy_all``
    (unanswered count as wrong), ``analogy_oov_rate``, ``analogy_semantic_accuracy`` /
    ``analogy_syntactic_accuracy`` (the ``gram*`` sections are syntactic), and per similarity benchmark
    ``<name>_spearman``, ``<name>_pearson``, ``<name>_oov_rate``; plus ``analogy_sections`` (a dict, for
    the report).
    """
    vocab = _Restricted(kv, restrict_vocab)
    questions = load_analogies(analogies_path)
    preds = _analogy_predictions(vocab, questions)
    refs = [q.expected for q in questions]
    ana = compute("word_analogy", predictions=preds, references=refs)
    out: dict[str, Any] = {"analogy_accuracy": ana["accuracy"], "analogy_accuracy_all": ana["accuracy_all"],
                           "analogy_oov_rate": ana["oov_rate"], "analogy_questions": ana["questions"]}
    for name, syntactic in (("semantic", False), ("syntactic", True)):
        idx = [i for i, q in enumerate(questions) if q.section.startswith("gram") == syntactic]
        part = compute("word_analogy", predictions=[preds[i] for i in idx], references=[refs[i] for i in idx])
        out[f"analogy_{name}_accuracy"] = part["accuracy"]
    sections: dict[str, dict[str, Any]] = {}
    for section in dict.fromkeys(q.section for q in questions):
        idx = [i for i, q in enumerate(questions) if q.section == section]
        part = compute("word_analogy", predictions=[preds[i] for i in idx], references=[refs[i] for i in idx])
        sections[section] = {"accuracy": part["accuracy"], "answered": part["answered"],
                             "questions": part["questions"]}
    for name in SIMILARITY_BENCHMARKS:
        pairs = load_word_pairs(name)
        sim = compute("word_similarity", predictions=_pair_similarities(vocab, pairs),
                      references=[p[2] for p in pairs])
        out.update({f"{name}_spearman": sim["spearman"], f"{name}_pearson": sim["pearson"],
                    f"{name}_oov_rate": sim["oov_rate"]})
    out["analogy_sections"] = sections
    return out


def nearest_neighbours(kv: Any, words: list[str], topn: int = 8) -> dict[str, list[tuple[str, float]] | None]:
    """``most_similar`` of each word (None for a word not in ``kv``'s vocabulary)."""
    out: dict[str, list[tuple[str, float]] | None] = {}
    for w in words:
        out[w] = ([(k, round(float(s), 4)) for k, s in kv.most_similar(w, topn=topn)]
                  if w in kv.key_to_index else None)
    return out
