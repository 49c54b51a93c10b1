"""Bad input gets a clear one-line error (or a loud warning), naming the file, row, key or value and the fix
(issue 19, items 8-12 and 16): rows named by their file and line, labels that do not fit the model, one-class
and tiny data, config values out of range, files that libraries would answer with a traceback."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv

import nlpkit
from nlpkit.config import load_config, to_dict
from nlpkit.errors import ConfigError, DataError
from nlpkit.plugins.sentiment.task import SentimentConfig, SentimentTask


def _task(**overrides: object) -> SentimentTask:
    return SentimentTask(load_config(SentimentConfig, None, {"trackers": [], **overrides}))


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the ``nlpkit`` command in-process; it must exit with status 2 and print one line, no traceback."""
    from nlpkit.cli import console_main

    with pytest.raises(SystemExit) as exit_info:
        console_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------- item 8: rows


def test_an_error_names_the_file_line_and_row_not_the_shuffled_position(tmp_path: Path) -> None:
    """Data row 137 of a csv (line 138, below the header) is named so, whichever shuffled split it lands in."""
    rows = sentiment_rows(200)
    rows[136] = ("", "positive")  # data row 137 (counted from 1)
    path = write_csv(tmp_path / "my.csv", rows)
    with pytest.raises(DataError, match=r"my\.csv line 138 \(row 137, (train|validation|test) split\) has an empty "
                                        r"text"):
        _task(**{"data.source": str(path), "data.empty_texts": "error"}).load_data()


def test_a_missing_training_label_names_its_file_line(tmp_path: Path) -> None:
    rows = sentiment_rows(60)
    rows[41] = (rows[41][0], "")  # data row 42: no label
    path = write_csv(tmp_path / "labels.csv", rows)
    with pytest.raises(DataError, match=r"labels\.csv line 43 \(row 42, train split\) has no label"):
        _task(**{"data.source": str(path), "data.validation_size": 0.1, "data.test_size": 0.1,
                 "data.stratify": "false"}).load_data()


# ---------------------------------------------------------------------------------------------- item 10: classes, sizes


def test_training_on_one_class_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "one.csv", [(t, "positive") for t, _ in sentiment_rows(60)])
    with pytest.raises(DataError, match=r"one\.csv: every training row has the label 'positive' .*at least two "
                                        r"classes"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, path, tmp_path / "run"))


def test_evaluating_one_class_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(tmp_path / "one.csv", [(t, "negative") for t, _ in sentiment_rows(60)])
    with caplog.at_level(logging.WARNING):
        _task(**{"data.source": str(path)}).load_data()  # no run folder: evaluation or prediction
    assert any("every row has the label 'negative'" in r.getMessage() for r in caplog.records)


def test_tiny_splits_are_reported_with_their_sizes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(tmp_path / "ten.csv", sentiment_rows(10))
    with caplog.at_level(logging.WARNING):
        data = _task(**{"data.source": str(path)}).load_data()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "validation": 1, "test": 1}
    warned = [r.getMessage() for r in caplog.records if "small splits" in r.getMessage()]
    assert warned and "train 8, validation 1, test 1" in warned[0] and "fewer than 20" in warned[0]


# ---------------------------------------------------------------------------------------------- item 11: config values


@pytest.mark.parametrize(("override", "expected"), [
    ("train.epochs=0", r"train\.epochs=0\.0: must be a finite number > 0"),
    ("train.epochs=-1", r"train\.epochs=-1\.0: must be a finite number > 0"),
    ("data.test_size=0", r"data\.test_size=0\.0: must be a fraction between 0 and 1 .*or a whole number of rows"),
    ("data.validation_size=1.5", r"data\.validation_size=1\.5: must be a fraction"),
    ("train.warmup_ratio=1.5", r"train\.warmup_ratio=1\.5: must be between 0 and 1"),
    ("data.max_length=0", r"data\.max_length=0: must be >= 1"),
    ("train.lr=0", r"train\.lr=0\.0: must be a finite number > 0"),
    ("train.lr=nan", r"train\.lr=nan: must be a finite number > 0"),
    ("train.lr=inf", r"train\.lr=inf: must be a finite number > 0"),
    ("train.batch_size=0", r"train\.batch_size=0: must be >= 1"),
    ("train.grad_accum=0", r"train\.grad_accum=0: must be >= 1"),
    ("train.scheduler=cosin", r"train\.scheduler='cosin': must be one of linear, cosine, .*constant"),
])
def test_config_values_out_of_range_fail_when_the_config_is_built(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(SentimentConfig, None, [override])


def test_validation_size_is_a_fraction_or_a_whole_count() -> None:
    assert load_config(SentimentConfig, None, ["data.validation_size=0.25"]).data.validation_size == 0.25
    assert load_config(SentimentConfig, None, ["data.validation_size=300"]).data.validation_size == 300


def test_a_bad_value_is_one_line_on_the_command_line(capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(capsys, ["train", "sentiment", "train.batch_size=0"])
    assert err == "error: train.batch_size=0: must be >= 1 (set it with train.batch_size=...)."


def test_an_unknown_metric_for_best_fails_before_the_run_starts(tiny_bert: Path, sentiment_data: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"train\.metric_for_best='acuracy' is not a validation metric of the "
                                          r"sentiment task\. Did you mean 'accuracy'\?"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out,
                                                        **{"train.metric_for_best": "acuracy"}))
    assert not out.exists()  # nothing was loaded, trained or written


# ---------------------------------------------------------------------------------------------- item 16: defaults


def test_lora_gets_its_own_learning_rate_unless_lr_is_given() -> None:
    assert load_config(SentimentConfig, None, []).train.lr == 1e-4  # the full fine-tune's
    lora = load_config(SentimentConfig, None, ["train.lora=true"])
    assert lora.train.lr == 1e-3 and to_dict(lora)["train"]["lr"] == 1e-3  # config.yaml and reports show it
    assert load_config(SentimentConfig, None, ["train.lora=true", "train.lr=2e-4"]).train.lr == 2e-4
    assert load_config(SentimentConfig, None, ["train.lr=3e-5"]).train.lr == 3e-5
    # a saved run's config keeps the rate it trained with
    assert math.isclose(load_config(SentimentConfig, to_dict(lora), []).train.lr, 1e-3)


def test_list_labels_are_multi_label_by_default(tmp_path: Path) -> None:
    rows = [{"text": t, "label": ["joy"] if i % 3 else ["joy", "anger"]} for i, (t, _) in
            enumerate(sentiment_rows(60))]
    path = tmp_path / "multi.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = _task(**{"data.source": str(path)}).load_data()
    assert data.info.problem_type == "multi_label" and data.info.labels == ["anger", "joy"]

