"""Translation task: data formats and their errors, learning, fine-tuning paths, decoding, multi-process eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_translation import (
    SCRATCH_TINY,
    build_tiny_marian,
    build_tiny_t5,
    pairs,
    translation_overrides,
    write_folder,
    write_jsonl,
)

import nlpkit
from nlpkit.config import GenerateConfig, load_config
from nlpkit.data import DataError
from nlpkit.errors import UsageError
from nlpkit.plugins.translation import TranslationConfig, TranslationTask
from nlpkit.plugins.translation.decoder_only import DecoderOnlyBackend

REPO = Path(__file__).resolve().parents[1]


def _task(**overrides: object) -> TranslationTask:
    return TranslationTask(load_config(TranslationConfig, overrides={**SCRATCH_TINY, **overrides}))


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("tiny-marian"))


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("toy"), pairs(64, 1), pairs(12, 2), pairs(25, 3))


# ------------------------------------------------------------------------------------------ data


def test_jsonl_translation_form_and_languages(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "d", pairs(20, 1), pairs(4, 2), pairs(5, 3))
    ds = _task(**{"data.source": str(data)}).load_data().splits
    assert {k: len(v) for k, v in ds.items()} == {"train": 20, "validation": 4, "test": 5}
    assert ds["test"][0]["source"] == pairs(5, 3)[0][0] and ds["test"][0]["target"] == pairs(5, 3)[0][1]
    # the reverse direction is the same file with the languages swapped
    rev = _task(**{"data.source": str(data), "translation.source_lang": "fr", "translation.target_lang": "en"})
    assert rev.load_data().splits["test"][0]["source"] == pairs(5, 3)[0][1]


def test_missing_language_key_names_the_row(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "train.jsonl", pairs(6))
    lines = f.read_text().splitlines()
    lines[3] = json.dumps({"translation": {"en": "the cat", "de": "die Katze"}})
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 3: the translation has no 'fr' text \(it has \['de', 'en'\]\)"):
        _task(**{"data.source": str(f)}).load_data()


def test_csv_source_target_columns_and_wrong_column(tmp_path: Path) -> None:
    import csv

    f = tmp_path / "pairs.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "target"])
        w.writerows(pairs(40))
    ds = _task(**{"data.source": str(f), "data.test_size": 5.0, "data.validation_size": 5.0}).load_data().splits
    assert {k: len(v) for k, v in ds.items()} == {"train": 30, "validation": 5, "test": 5}
    with pytest.raises(DataError, match="no column 'english'.*translation.source_column"):
        _task(**{"data.source": str(f), "translation.source_column": "english"}).load_data()


def test_aligned_text_files(tmp_path: Path) -> None:
    rows = pairs(30)
    (tmp_path / "c.en").write_text("\n".join(s for s, _ in rows) + "\n")
    (tmp_path / "c.fr").write_text("\n".join(t for _, t in rows) + "\n")
    src = f"{tmp_path / 'c.en'},{tmp_path / 'c.fr'}"
    ds = _task(**{"data.source": src, "data.test_size": 5.0, "data.validation_size": 5.0}).load_data().splits
    got = {(r["source"], r["target"]) for split in ds.values() for r in split}
    assert got == set(rows)  # every line stays paired with its own translation


def test_misaligned_text_files_name_both_files_and_counts(tmp_path: Path) -> None:
    (tmp_path / "c.en").write_text("a\nb\nc\n")
    (tmp_path / "c.fr").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"c\.en has 3 lines but .*c\.fr has 2"):
        _task(**{"data.source": f"{tmp_path / 'c.en'},{tmp_path / 'c.fr'}"}).load_data()


def test_empty_sides_skipped_and_counted_or_refused(tmp_path: Path) -> None:
    rows = pairs(20)
    rows[4] = (rows[4][0], "   ")
    rows[7] = ("", rows[7][1])
    (tmp_path / "c.en").write_text("\n".join(s for s, _ in rows) + "\n")
    (tmp_path / "c.fr").write_text("\n".join(t for _, t in rows) + "\n")
    src = f"{tmp_path / 'c.en'},{tmp_path / 'c.fr'}"
    task = _task(**{"data.source": src, "data.test_size": 3.0, "data.validation_size": 3.0})
    data = task.load_data()
    assert sum(len(v) for v in data.splits.values()) == 18
    assert data.notes["empty sides skipped"] == {"train": 2}
    with pytest.raises(DataError, match="line 5 is empty"):
        _task(**{"data.source": src, "data.empty_texts": "error"}).load_data()


@pytest.mark.slow
def test_catalog_default_splits_by_chapter() -> None:
    """The real bible-en-fr: no chapter is in two splits, and the split does not depend on the process."""
    from nlpkit import assets

    if not (assets.cache_dir() / "bible-en-fr" / "data.parquet").exists():
        pytest.skip("bible-en-fr is not in the asset cache")
    task = TranslationTask(TranslationConfig())
    data = task.load_data()
    ds = data.splits
    assert data.info.source_lang == "en" and data.info.target_lang == "fr"
    assert sum(len(v) for v in ds.values()) > 30000
    import pandas as pd

    full = pd.read_parquet(assets.cache_dir() / "bible-en-fr" / "data.parquet")
    unique = full.drop_duplicates("en", keep=False)  # identical verses exist in different chapters
    chapter = dict(zip(unique["en"], unique["chapter_id"], strict=True))
    chapters = {k: {chapter[s] for s in v["source"] if s in chapter} for k, v in ds.items()}
    assert not chapters["train"] & chapters["test"] and not chapters["train"] & chapters["validation"]
    again = TranslationTask(TranslationConfig()).load_data().splits
    assert again["test"]["source"] == ds["test"]["source"]


# ------------------------------------------------------------------------------------------ learning


@pytest.mark.slow  # > 60 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_tiny_model_overfits_to_exact_translations(tmp_path: Path) -> None:
    few = pairs(8, seed=5)
    data = write_folder(tmp_path / "d", few, few, few)
    report = nlpkit.train(
        "translation",
        **translation_overrides(
            data,
            tmp_path / "run",
            **{
                "train.max_steps": 150,
                "train.eval_every": 150,
                "train.lr": 1e-2,
                "train.batch_size": 8,
                "translation.label_smoothing": 0.0,
                "translation.scratch.d_model": 64,
                "translation.scratch.ffn_dim": 128,
                "translation.scratch.dropout": 0.0,
            },
        ),
    )
    assert report["test"]["bleu"] == pytest.approx(100.0)
    first = next(h["loss"] for h in report["history"] if "loss" in h)
    assert report["test"]["loss"] < first / 20
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    assert pipe([s for s, _ in few], num_beams=3) == [t for _, t in few]
    assert report["test"]["copy_source_bleu"] < 10  # the baseline the report shows next to the score
    md = (Path(report["run_dir"]) / "report.md").read_text()
    assert report["test"]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "BLEU signature" in md and "nrefs:1" in md and "bleu_by_length.png" in md
    assert (Path(report["run_dir"]) / "bleu_by_length.png").exists()


@pytest.mark.parametrize(("architecture", "model_type"), [("pre_norm", "m2m_100"), ("post_norm", "marian")])
def test_saved_scratch_model_is_standard_hf(tmp_path: Path, toy_data: Path, architecture: str, model_type: str) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    extra = {"train.max_steps": 2, "translation.scratch.architecture": architecture}
    report = nlpkit.train("translation", **translation_overrides(toy_data, tmp_path / "run", **extra))
    model_dir = Path(report["run_dir"]) / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    assert model.config.model_type == model_type
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    ids = tok("the red cat sleeps")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True) == "the red cat sleeps"


@pytest.mark.slow  # > 60 s on 2 cores: runs in CI's slow stage (pytest -m slow)
def test_decoding_options_and_order(tmp_path: Path, toy_data: Path) -> None:
    report = nlpkit.train("translation", **translation_overrides(toy_data, tmp_path / "run", **{"train.max_steps": 3}))
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    inputs = ["the red cat sleeps and the big dog runs", "the cat", "", "the old king sings"]
    out = pipe(inputs, batch_size=2, num_beams=2)
    assert len(out) == 4 and out[2] == "" and all(isinstance(o, str) for o in out)
    assert out == [pipe(x, num_beams=2) for x in inputs]
    many = pipe(["the cat"], num_beams=3, num_return_sequences=3)
    assert len(many[0]) == 3
    with pytest.raises(UsageError, match="beam_size"):
        pipe(["the cat"], beam_size=4)
    # n-gram blocking reaches generate() (the untrained model's greedy loops are what it stops)
    assert pipe.task.generate_kwargs(GenerateConfig(no_repeat_ngram_size=3))["no_repeat_ngram_size"] == 3
    assert len(pipe(inputs, no_repeat_ngram_size=2)) == 4
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        pipe(["the cat"], no_repeat_ngram_size=-1)


# ------------------------------------------------------------------------------------------ fine-tuning


def test_finetune_tiny_marian_folder(tmp_path: Path, toy_data: Path, tiny_marian: Path) -> None:
    report = nlpkit.train(
        "translation",
        **translation_overrides(
            toy_data,
            tmp_path / "run",
            model=str(tiny_marian),
            **{"train.max_steps": 40, "train.eval_every": 40, "train.lr": 1e-2},
        ),
    )
    assert report["model"] == str(tiny_marian)
    first = next(h["loss"] for h in report["history"] if "loss" in h)
    last = [h["loss"] for h in report["history"] if "loss" in h][-1]
    assert last < first * 0.7
    assert not (Path(report["run_dir"]) / "tokenizer").exists()  # the model's own tokenizer is kept


def test_finetune_tiny_t5_with_task_prefix(tmp_path: Path, toy_data: Path, tiny_t5: Path) -> None:
    task = _task(model=str(tiny_t5), **{"data.source": str(toy_data)})
    task.load_model(task.load_data().info)
    enc = task.encode({"source": ["the cat"], "target": ["le chat"]})
    assert (
        task.tokenizer.decode(enc["input_ids"][0], skip_special_tokens=True) == "translate English to French: the cat"
    )
    report = nlpkit.train(
        "translation",
        **translation_overrides(
            toy_data,
            tmp_path / "run",
            model=str(tiny_t5),
            **{"train.max_steps": 40, "train.eval_every": 40, "train.lr": 1e-2},
        ),
    )
    first = next(h["loss"] for h in report["history"] if "loss" in h)
    last = [h["loss"] for h in report["history"] if "loss" in h][-1]
    assert last < first * 0.7
    saved = json.loads((Path(report["run_dir"]) / "model" / "nlpkit_task.json").read_text())
    assert saved["info"]["source_lang"] == "en"  # the prefix is rebuilt the same on load
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    assert pipe.task.backend.prefix == "translate English to French: "


# ------------------------------------------------------------------------------------------ processes

_TWO_PROC = """
import json, sys
import nlpkit
overrides = json.loads(sys.argv[1])
nlpkit.train("translation", **overrides)
"""


@pytest.mark.multiproc
def test_two_process_eval_counts_every_sentence_once(tmp_path: Path) -> None:
    """2 CPU processes (gloo): test metrics over exactly the 25 test sentences, equal to a 1-process eval."""
    data = write_folder(tmp_path / "d", pairs(64, 1), pairs(11, 2), pairs(25, 3))
    run = tmp_path / "run"
    overrides = translation_overrides(data, run, **{"train.max_steps": 3, "train.eval_batch_size": 4})
    script = tmp_path / "two_proc.py"
    script.write_text(_TWO_PROC)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29541",
        str(script),
        json.dumps(overrides),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["processes"] == 2
    assert report["test"]["samples"] == 25 and report["validation"]["samples"] == 11
    single = nlpkit.evaluate(str(run))  # one process, same saved model and split
    assert single["samples"] == 25
    for key in ("bleu", "chrf", "loss"):
        assert single[key] == pytest.approx(report["test"][key], rel=1e-6, abs=1e-6), key


# ------------------------------------------------------------------------------------------ decoder-only


def test_decoder_only_trains_and_loss_ignores_prompt(tmp_path: Path, toy_data: Path) -> None:
    import torch
    import torch.nn.functional as F
    from tiny_translation import build_tiny_causal

    model_dir = build_tiny_causal(tmp_path / "tiny-llama")
    task = _task(model=str(model_dir), **{"data.source": str(toy_data)})
    task.load_model(task.load_data().info)
    assert isinstance(task.backend, DecoderOnlyBackend)
    enc = task.encode({"source": ["the red cat sleeps"], "target": ["le chat rouge dort"], "ref_id": [0]})
    prompt = task.tokenizer(task.backend.prompt("the red cat sleeps"))["input_ids"]
    labels = enc["labels"][0]
    assert labels[: len(prompt)] == [-100] * len(prompt)  # no loss on the prompt
    assert task.tokenizer.decode(labels[len(prompt) :]) == " le chat rouge dort<|endoftext|>"
    # the training loss is exactly the mean NLL of the target tokens: the prompt's tokens do not count
    batch = task.collate([{k: v[0] for k, v in enc.items()}])
    loss = task.loss(task.model, batch)
    logits = task.model(input_ids=batch["input_ids"]).logits[0, :-1]
    targets = torch.tensor(batch["input_ids"][0, 1:])
    target_pos = torch.arange(len(prompt) - 1, len(targets))
    manual = F.cross_entropy(logits[target_pos], targets[target_pos])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)

    report = nlpkit.train(
        "translation",
        **translation_overrides(
            toy_data,
            tmp_path / "run",
            model=str(model_dir),
            **{"train.max_steps": 30, "train.eval_every": 30, "train.lr": 5e-3, "generate.max_new_tokens": 16},
        ),
    )
    losses = [h["loss"] for h in report["history"] if "loss" in h]
    assert losses[-1] < losses[0] * 0.6
    assert report["test"]["samples"] == 25 and 0 <= report["test"]["bleu"] <= 100
    pipe = nlpkit.pipeline(report["run_dir"], device="cpu")
    out = pipe(["the red cat sleeps", "", "the dog"], max_new_tokens=16)
    assert len(out) == 3 and out[1] == "" and all("\n" not in o for o in out)  # stops at the target's end
