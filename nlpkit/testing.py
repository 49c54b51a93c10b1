"""Checks for task plugin authors: the contract every task honours, as one function.

A plugin's own test suite calls it with a few-step configuration of a tiny model::

    from nlpkit.testing import check_task_contract

    def test_my_task_honours_the_contract(tmp_path):
        check_task_contract("my_task", {"model": ..., "data.source": ..., "output_dir": str(tmp_path / "run"),
                                        "train.max_steps": 6}, ["an input", "another"])

It trains, then checks what nlpkit promises for every task: the run folder's files, that the saved model
re-scores the test split exactly (``nlpkit.evaluate``), and that the pipeline serves it with batched results
equal to one-at-a-time results, in input order. :func:`tiny_bert` makes the tiny model such tests train.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["check_task_contract", "close", "tiny_bert", "tiny_vocab"]


def check_task_contract(task: str, overrides: dict[str, Any], inputs: list[Any]) -> dict[str, Any]:
    """Train ``task`` briefly with ``overrides`` and check the contract; returns the report (AssertionError if not)."""
    import nlpkit

    report = nlpkit.train(task, **overrides)
    run = Path(report["run_dir"])
    # a run leaves its numbers, a readable report, its config and a loadable model
    for name in ("report.json", "report.md", "config.yaml"):
        assert (run / name).exists(), f"{task}: {name} missing"
    assert json.loads((run / "report.json").read_text())["task"] == task
    assert report["test"], f"{task}: no test metrics"
    # reloaded from disk, the model scores the test split exactly as the in-memory model did before saving
    again = nlpkit.evaluate(str(run))
    main = report["main_metric"]
    assert math.isclose(again[main], report["test"][main], rel_tol=1e-5, abs_tol=1e-6), \
        f"{task}: {main} changed from {report['test'][main]} to {again[main]} after reloading"
    # the pipeline serves the saved run: batched results equal one-at-a-time results, in input order
    pipe = nlpkit.pipeline(str(run), device="cpu")
    batched = pipe(inputs, batch_size=2)
    assert len(batched) == len(inputs)
    assert close(batched, [pipe(x) for x in inputs]), f"{task}: batched and single predictions differ"
    return report


def close(a: object, b: object) -> bool:
    """Equal, with floats compared to 1e-4 (padding changes the last bits of a batched forward pass)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4 * max(1.0, abs(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def tiny_bert(out: str | Path, corpus: list[str], *, vocab_size: int = 200, hidden_size: int = 32,
              intermediate_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny, randomly initialised BERT encoder (``BertModel``) and a lowercasing WordPiece tokenizer
    whose vocabulary comes from ``corpus`` (:func:`tiny_vocab`) to the folder ``out``, laid out like a hub repo;
    return the folder. The same arguments give the same files, byte for byte. A task's
    ``build_model`` puts its own head on it. Built from scratch on the spot: no download, no remote code, seconds."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in corpus for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    tok = Tokenizer(models.WordPiece(tiny_vocab(words, vocab_size), unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]", model_max_length=128).save_pretrained(out)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=intermediate_size, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    return out


def tiny_vocab(words: Counter[str], size: int) -> dict[str, int]:
    """A WordPiece vocabulary built the same way every time from the corpus's word counts: the special tokens,
    every character and its ``##`` continuation (so every word can be spelled), then whole words, most frequent
    first, ties by spelling, until ``size``. (The tokenizers library's WordPiece trainer breaks ties between equal
    counts differently from run to run, so a tiny model and every test on it changed with each build.)"""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for w in words for c in w})
    tokens = specials + chars + ["##" + c for c in chars]
    known = set(tokens)
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(tokens) >= size:
            break
        if word not in known:
            tokens.append(word)
            known.add(word)
    return {t: i for i, t in enumerate(tokens)}
