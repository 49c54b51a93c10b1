"""The shared data loader: every source format, hub subsets, stratified seeded splits, Arrow-speed preparation
with a reused tokenization cache, and clear errors for bad, tiny and odd input."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

import nlpkit
from nlpkit.config import DataConfig, load_config
from nlpkit.data import DataError, load_splits, visible_columns
from nlpkit.errors import ConfigError


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
    assert set(visible_columns(ds["train"])) == {"text", "label"}


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
    with pytest.raises(DataError, match=r"test\.csv line 7 \(row 6, test split\): label 'neutral'.*"
                                          r"\['negative', 'positive'\]"):
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
    with pytest.raises(DataError, match=r"row \d+, (train|validation|test) split\) has an empty text.*"
                                        r"data\.empty_texts=skip"):
        _train(tiny_bert, data, tmp_path / "again", **{"data.empty_texts": "error"})  # a new run folder


def test_missing_source(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv does not exist"):
        _train(tiny_bert, tmp_path / "nope.csv", tmp_path)


# ------------------------------------------------------------------ helpers for the sections below


def _task(source: Path | str, **overrides: object):
    """A sentiment task on ``source`` (its model is only loaded when a test asks for it)."""
    cls = nlpkit.get_task("sentiment")
    return cls(load_config(cls.Config, None, {"data.source": str(source), **overrides}))


# ------------------------------------------------------------------ hub datasets as users name them


def _subsets_folder(root: Path) -> Path:
    """A dataset folder whose README declares two subsets (configs), the way hub datasets such as glue do."""
    (root / "sst2").mkdir(parents=True)
    (root / "reviews").mkdir()
    binary = [(t, int(lab == "positive")) for t, lab in sentiment_rows(50)]
    write_csv(root / "sst2" / "train.csv", binary[:40], header=("sentence", "label"))
    write_csv(root / "sst2" / "validation.csv", binary[40:], header=("sentence", "label"))
    write_csv(root / "reviews" / "data.csv", sentiment_rows(30, seed=4), header=("review", "stars"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: sst2\n  data_files:\n  - split: train\n    path: sst2/train.csv\n"
        "  - split: validation\n    path: sst2/validation.csv\n- config_name: reviews\n  data_files: reviews/*.csv\n"
        "---\n# Two subsets\n")
    return root


def test_dataset_folder_subsets_load_by_config(tmp_path: Path) -> None:
    folder = _subsets_folder(tmp_path / "multi")
    ds, _ = load_splits(DataConfig(source=str(folder), config="sst2"), seed=0)
    assert len(ds["validation"]) == 10 and len(ds["train"]) + len(ds["test"]) == 40
    assert visible_columns(ds["train"]) == ["sentence", "label"]
    ds, _ = load_splits(DataConfig(source=str(folder), config="reviews"), seed=0)
    assert visible_columns(ds["train"]) == ["review", "stars"] and sum(len(v) for v in ds.values()) == 30
    ds, _ = load_splits(DataConfig(source=str(folder), data_files={"train": "reviews/data.csv"}), seed=0)
    assert visible_columns(ds["train"]) == ["review", "stars"]
    with pytest.raises(DataError, match=r"no subset \(config\) 'sst3'; its subsets are \['sst2', 'reviews'\]\. "
                                        r"Did you mean 'sst2'\?"):
        load_splits(DataConfig(source=str(folder), config="sst3"), seed=0)
    with pytest.raises(DataError, match=r"several subsets \(configs\): \['sst2', 'reviews'\].*data\.config=NAME"):
        load_splits(DataConfig(source=str(folder)), seed=0)
    # The same through the task and its key=value options, as `accelerate launch tasks/sentiment.py` gets them.
    cls = nlpkit.get_task("sentiment")
    cfg = load_config(cls.Config, None, [f"data.source={folder}", "data.config=sst2", "data.text_column=sentence"])
    data = cls(cfg).load_data()
    assert data.info.labels == ["0", "1"] and data.splits["validation"].num_rows == 10


def test_hub_subset_revision_and_files_reach_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub is out of reach here: the options must arrive as load_dataset's name/revision/data_files."""
    seen: dict = {}

    def fake_load_dataset(path: str, **kwargs: object) -> DatasetDict:
        seen.update(path=path, **kwargs)
        return DatasetDict({"train": Dataset.from_dict({"sentence": [t for t, _ in sentiment_rows(40)],
                                                        "label": [i % 2 for i in range(40)]})})

    monkeypatch.setattr("nlpkit.data_files.load_dataset", fake_load_dataset)
    cls = nlpkit.get_task("sentiment")
    cfg = load_config(cls.Config, None, ["data.source=someone/glue-like", "data.config=sst2", "data.revision=v1.0",
                                         "data.data_files={train: sst2/train-*.parquet}", "data.text_column=sentence"])
    data = cls(cfg).load_data()
    assert seen == {"path": "someone/glue-like", "name": "sst2", "revision": "v1.0",
                    "data_files": {"train": "sst2/train-*.parquet"}}
    assert sum(len(v) for v in data.splits.values()) == 40
    with pytest.raises(ConfigError, match=r"data\.config apply to hub datasets.*rotten_tomatoes is a catalog name"):
        load_splits(DataConfig(source="rotten_tomatoes", config="sst2"), seed=0)


def _classlabel_parquet(path: Path, names: list[str], rows: list[tuple[str, str]]) -> Path:
    """A parquet file whose label column is a ClassLabel (datasets keeps it in the parquet schema metadata)."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    Dataset.from_dict({"text": [t for t, _ in rows], "label": [int(lab == "positive") for _, lab in rows]},
                      features=features).to_parquet(str(path))
    return path


def test_classlabel_names_reach_the_report_and_the_pipeline(tiny_bert: Path, tmp_path: Path) -> None:
    names = ["terrible", "great"]  # not in sorted order: the dataset's own ids must be kept
    path = _classlabel_parquet(tmp_path / "reviews.parquet", names, sentiment_rows(120))
    data = _task(path).load_data()
    assert data.info.labels == names
    report = _train(tiny_bert, path, tmp_path, **{"train.max_steps": 2})
    assert report["test"]["labels"] == names
    assert "terrible" in (Path(report["run_dir"]) / "report.md").read_text()
    config = json.loads((Path(report["run_dir"]) / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "terrible", "1": "great"}
    assert nlpkit.pipeline(report["run_dir"], device="cpu")("a great film")["label"] in names
    # Hub test splits mark hidden labels with -1: the error says so.
    folder = tmp_path / "hidden"
    folder.mkdir()
    _classlabel_parquet(folder / "train.parquet", names, sentiment_rows(40))
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    Dataset.from_dict({"text": ["a film"] * 3, "label": [-1] * 3}, features=features).to_parquet(
        str(folder / "test.parquet"))
    with pytest.raises(DataError, match=r"test\.parquet row 1 \(test split\): label -1 .*-1 marks a hidden label"):
        _task(folder).load_data()


# ------------------------------------------------------------------ stratified splits


def _imbalanced_csv(path: Path) -> Path:
    rows = ([(f"common review number {i}", "common") for i in range(360)]
            + [(f"rare review number {i}", "rare") for i in range(40)] + [("one of a kind review", "unique")])
    random.Random(0).shuffle(rows)
    return write_csv(path, rows)


def test_stratified_splits_keep_class_proportions(tmp_path: Path) -> None:
    path = _imbalanced_csv(tmp_path / "imbalanced.csv")
    for seed in range(5):
        data = _task(path, seed=seed).load_data()
        assert data.info.labels == ["common", "rare", "unique"]
        counts = {k: dict(Counter(v["labels"])) for k, v in data.splits.items()}
        # 401 rows, 10% each: 36 + 4 held out twice; the one 'unique' row stays in train, where it can be learned.
        assert counts == {"train": {0: 288, 1: 32, 2: 1}, "validation": {0: 36, 1: 4}, "test": {0: 36, 1: 4}}
    # A pure function of the data and the seed: the same on every rank, a different one for another seed.
    a, b, c = (_task(path, seed=s).load_data().splits for s in (1, 1, 2))
    assert list(a["test"]["text"]) == list(b["test"]["text"]) != list(c["test"]["text"])
    assert not set(a["test"]["text"]) & set(a["train"]["text"])
    # data.stratify=false: the plain seeded split, exactly what load_splits makes without a label column.
    plain, _ = load_splits(DataConfig(source=str(path)), seed=1)
    off = _task(path, seed=1, **{"data.stratify": "false", "data.empty_texts": "skip"})
    assert list(off.load_data().splits["test"]["text"]) == list(plain["test"]["text"])


def test_split_by_groups_win_over_stratification(tmp_path: Path) -> None:
    df = _frame(120).assign(doc=[i // 10 for i in range(120)])
    df.to_csv(tmp_path / "d.csv", index=False)
    ds, _ = load_splits(DataConfig(source=str(tmp_path / "d.csv"), split_by="doc"), seed=0, label_column="label")
    groups = {k: set(v["doc"]) for k, v in ds.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]


# ------------------------------------------------------------------ a million rows: Arrow all the way, cached


def test_preparation_never_reads_a_column_as_python_objects(tiny_bert: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """load_data -> encode -> lengths read columns as Arrow: a column read as Python objects fails here."""
    from accelerate import Accelerator

    from nlpkit.training import encode_splits

    path = write_csv(tmp_path / "d.csv", sentiment_rows(200) + [("  ", "positive"), ("", "negative")])
    task = _task(path, model=str(tiny_bert))
    real = Dataset.__getitem__

    def guarded(self: Dataset, key: object) -> object:
        if isinstance(key, str) and self.format["type"] in (None, "python"):
            raise AssertionError(f"column {key!r} read as Python objects")
        return real(self, key)

    monkeypatch.setattr(Dataset, "__getitem__", guarded)
    data = task.load_data()
    task.load_model(data.info)
    encoded = encode_splits(task, data.splits, Accelerator(cpu=True))
    lengths = task.lengths(encoded["train"])
    monkeypatch.undo()
    assert sum(data.notes["empty texts skipped"].values()) == 2
    assert sum(len(v) for v in data.splits.values()) == 200
    assert lengths == [len(ids) for ids in encoded["train"]["input_ids"]] and len(lengths) == len(data.splits["train"])
    names = data.info.labels
    assert [names[i] for i in data.splits["test"]["labels"]] == \
        [dict(sentiment_rows(200))[t] for t in data.splits["test"]["text"]]


def test_second_identical_run_reuses_the_tokenized_cache(tiny_bert: Path, tmp_path: Path) -> None:
    from accelerate import Accelerator

    from nlpkit.training import encode_splits

    path = write_csv(tmp_path / "d.csv", sentiment_rows(3000))

    def prepared(source: Path, **overrides: object):
        task = _task(source, model=str(tiny_bert), **overrides)
        data = task.load_data()
        task.load_model(data.info)  # a new, randomly initialised head each time: must not matter
        return task, data

    task, data = prepared(path)
    first = encode_splits(task, data.splits, Accelerator(cpu=True))
    files = [f["filename"] for f in first["train"].cache_files]
    stamps = [os.stat(f).st_mtime_ns for f in files]
    task, data = prepared(path)
    calls = []
    encode = task.encode
    task.encode = lambda batch: calls.append(len(batch["text"])) or encode(batch)
    second = encode_splits(task, data.splits, Accelerator(cpu=True))
    assert not calls, "the second identical run tokenized again"
    assert [f["filename"] for f in second["train"].cache_files] == files
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    # data.num_proc=2 tokenizes in two processes (a fresh copy of the file: nothing cached) to the same result.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    task, data = prepared(copy, **{"data.num_proc": 2})
    parallel = encode_splits(task, data.splits, Accelerator(cpu=True))
    assert len({f["filename"] for f in parallel["train"].cache_files}) == 2
    for split in ("train", "validation", "test"):
        assert parallel[split]["input_ids"][:] == first[split]["input_ids"][:]
        assert parallel[split]["labels"][:] == first[split]["labels"][:]


def test_token_ids_match_the_tokenizer_call(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Arrow fast path gives the tokenizer call's ids (special tokens, truncation side), WordPiece and BPE."""
    from tiny_generation import tiny_llama
    from transformers import AutoTokenizer

    from nlpkit.tokenizing import token_ids

    texts = [t for t, _ in sentiment_rows(50)] + ["", "   ", "word " * 300, "Caf\u00e9 na\u00efve \u65e5\u672c"]
    for folder in (tiny_bert, tiny_llama(tmp_path_factory)):
        tok = AutoTokenizer.from_pretrained(folder)
        for side in ("right", "left"):
            tok.truncation_side = side
            for n in (None, 8, 64):
                want = tok(texts, truncation=n is not None, max_length=n)["input_ids"]
                got = token_ids(tok, texts, n)
                assert str(got.type) == "list<item: int32>"
                assert got.to_pylist() == want, (folder.name, side, n)
        assert token_ids(tok, texts, 8).to_pylist() != token_ids(tok, texts, None).to_pylist()


# ------------------------------------------------------------------ tiny and odd files


def test_tiny_files_get_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    wrong = write_csv(tmp_path / "two.csv", sentiment_rows(2), header=("review", "sentiment"))
    with pytest.raises(DataError, match=r"two\.csv \(train split\) has no column 'text'; its columns are "
                                        r"\['review', 'sentiment'\]"):
        _task(wrong).load_data()
    two = write_csv(tmp_path / "ok.csv", sentiment_rows(2))
    with pytest.raises(DataError, match=r"ok\.csv has 2 rows: too few to hold out validation and test rows "
                                        r"\(1 \+ 1\).*validation\.\* / test\.\*.*data\.validation_size / "
                                        r"data\.test_size"):
        _task(two).load_data()
    long = write_csv(tmp_path / "long.csv", [("a great film " * 100_000, "positive")])
    with pytest.raises(DataError, match=r"long\.csv has 1 row: too few"):
        _task(long).load_data()
    ten = write_csv(tmp_path / "ten.csv", sentiment_rows(10))
    with pytest.raises(DataError, match=r"ten\.csv has 10 rows: too few .*\(5 \+ 5\)"):
        _task(ten, **{"data.validation_size": 5, "data.test_size": 5}).load_data()
    sizes = {k: len(v) for k, v in _task(ten).load_data().splits.items()}
    assert sizes == {"train": 8, "validation": 1, "test": 1}
    numbers = write_csv(tmp_path / "numbers.csv", [(i, "positive") for i in range(20)])
    with pytest.raises(DataError, match=r"column 'text' holds int64 values, not text"):
        _task(numbers).load_data()


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])  # with and without a byte-order mark
def test_utf16_file_is_named_as_utf16(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("text,label\ngood film,positive\ndull film,negative\n".encode(codec))
    with pytest.raises(DataError, match=r"excel\.csv is UTF-16 text, not UTF-8\. Re-save it as UTF-8.*iconv -f "
                                        r"utf-16"):
        load_splits(DataConfig(source=str(path)), seed=0)
