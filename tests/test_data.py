"""The shared data loader: every source format, seeded splits, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv

import nlpkit
from nlpkit.config import DataConfig
from nlpkit.data import DataError, load_splits


def _frame(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(sentiment_rows(n), columns=["text", "label"])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_local_format_reads_and_splits(tmp_path: Path, suffix: str) -> None:
    df, path = _frame(), tmp_path / f"data{suffix}"
    {".csv": lambda: df.to_csv(path, index=False), ".tsv": lambda: df.to_csv(path, sep="\t", index=False),
     ".json": lambda: path.write_text(json.dumps(df.to_dict(orient="records"))),
     ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
     ".parquet": lambda: df.to_parquet(path)}[suffix]()
    ds, _ = load_splits(DataConfig(source=str(path), validation_size=0.1, test_size=0.2), seed=3)
    assert {k: len(v) for k, v in ds.items()} == {"train": 42, "validation": 6, "test": 12}
    assert set(ds["train"].column_names) == {"text", "label"}


def test_seeded_split_is_reproducible_and_disjoint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame(100).assign(text=lambda d: d.text + [f" #{i}" for i in range(100)]).to_csv(path, index=False)
    a, _ = load_splits(DataConfig(source=str(path)), seed=1)
    b, _ = load_splits(DataConfig(source=str(path)), seed=1)
    c, _ = load_splits(DataConfig(source=str(path)), seed=2)
    assert a["test"]["text"] == b["test"]["text"] and a["test"]["text"] != c["test"]["text"]
    assert not set(a["test"]["text"]) & set(a["train"]["text"])


def test_split_seed_fixes_the_split_across_run_seeds(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _frame(100).assign(text=lambda d: d.text + [f" #{i}" for i in range(100)]).to_csv(path, index=False)
    cfg = DataConfig(source=str(path), split_seed=7, max_train_samples=50)
    a, _ = load_splits(cfg, seed=1)
    b, _ = load_splits(cfg, seed=2)
    for split in ("train", "validation", "test"):
        assert list(a[split]["text"]) == list(b[split]["text"])
    c, _ = load_splits(DataConfig(source=str(path), max_train_samples=50), seed=7)
    assert list(c["test"]["text"]) == list(a["test"]["text"]), "split_seed=7 must equal the split of seed=7"


def test_group_split_keeps_groups_together(tmp_path: Path) -> None:
    df = _frame(120).assign(doc=[i // 10 for i in range(120)])
    df.to_csv(tmp_path / "d.csv", index=False)
    ds, _ = load_splits(DataConfig(source=str(tmp_path / "d.csv"), split_by="doc"), seed=0)
    groups = {k: set(v["doc"]) for k, v in ds.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert len(ds["test"]) % 10 == 0


def test_int_labels_and_column_mapping(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [(t, 1 if lab == "positive" else 0) for t, lab in sentiment_rows(80)]
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", rows, header=("review", "stars"))
    write_csv(data / "test.csv", rows[:20], header=("review", "stars"))
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, data, tmp_path / "run", **{
        "data.text_column": "review", "data.label_column": "stars", "train.max_steps": 2}))
    assert report["data_sizes"] == {"train": 72, "validation": 8, "test": 20}
    assert report["test"]["labels"] == ["0", "1"]


def _train(tiny_bert: Path, data: Path | str, tmp_path: Path, **extra: object) -> dict:
    return nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, data, tmp_path / "run",
                                                           **{"train.max_steps": 1, **extra}))


def test_missing_column_names_file_split_and_alternatives(tiny_bert: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", sentiment_rows(30), header=("review", "label"))
    with pytest.raises(DataError, match=r"d\.csv \(train split\) has no column 'text'.*\['review', 'label'\]"):
        _train(tiny_bert, path, tmp_path)


def test_empty_file(tiny_bert: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        _train(tiny_bert, tmp_path / "empty.csv", tmp_path)
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"header\.csv has no rows"):
        _train(tiny_bert, tmp_path / "header.csv", tmp_path)


def test_unreadable_encoding_names_the_line(tiny_bert: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ngood film,positive\ncaf\xe9 scene was dull,negative\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv line 3 is not valid UTF-8.*iconv"):
        _train(tiny_bert, path, tmp_path)


def test_binary_file(tiny_bert: Path, tmp_path: Path) -> None:
    path = tmp_path / "blob.csv"
    path.write_bytes(b"text,label\n\x00\x01\x02\x89PNG\x00\n")
    with pytest.raises(DataError, match=r"blob\.csv line 2 .*binary"):
        _train(tiny_bert, path, tmp_path)


def test_unknown_label_in_eval_data(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", sentiment_rows(40))
    write_csv(data / "test.csv", sentiment_rows(5) + [("so so film", "neutral")])
    with pytest.raises(DataError, match=r"\(test split\) row 5: label 'neutral'.*\['negative', 'positive'\]"):
        _train(tiny_bert, data, tmp_path)


def test_empty_texts_are_skipped_and_counted_or_rejected(tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", sentiment_rows(40) + [("", "positive"), ("   ", "negative")])
    write_csv(data / "test.csv", sentiment_rows(10) + [("", "negative")])
    report = _train(tiny_bert, data, tmp_path)
    assert report["data_notes"]["empty texts skipped"] == {"train": 2, "validation": 0, "test": 1} or \
        sum(report["data_notes"]["empty texts skipped"].values()) == 3
    assert report["data_sizes"]["test"] == 10
    assert "empty texts skipped" in (Path(report["run_dir"]) / "report.md").read_text()
    with pytest.raises(DataError, match=r"row \d+ has an empty text.*data\.empty_texts=skip"):
        _train(tiny_bert, data, tmp_path, **{"data.empty_texts": "error"})


def test_missing_source(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv does not exist"):
        _train(tiny_bert, tmp_path / "nope.csv", tmp_path)
