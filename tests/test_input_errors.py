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
from nlpkit.errors import ConfigError, DataError, ModelNotFoundError
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



# ---------------------------------------------------------------------------------------------- item 9: descriptors


@pytest.fixture(scope="module")
def small_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "small"
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, **{"train.max_steps": 2}))
    return out


def _copy_model(run: Path, tmp_path: Path, edit_info: dict | None = None) -> Path:
    """The run's model folder, copied, with its descriptor's ``info`` changed."""
    import shutil

    folder = Path(shutil.copytree(run / "model", tmp_path / "model"))
    if edit_info is not None:
        descriptor = json.loads((folder / "nlpkit_task.json").read_text())
        descriptor["info"].update(edit_info)
        (folder / "nlpkit_task.json").write_text(json.dumps(descriptor))
    return folder


def test_descriptor_labels_that_do_not_fit_the_head_are_refused(small_run: Path, tmp_path: Path) -> None:
    folder = _copy_model(small_run, tmp_path, {"labels": ["negative", "neutral", "positive"]})
    with pytest.raises(ModelNotFoundError, match=r"nlpkit_task\.json lists 3 labels .*classification head .*has 2 "
                                                 r"outputs"):
        nlpkit.pipeline(str(folder), device="cpu")


def test_a_label_string_in_the_descriptor_is_refused(small_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    folder = _copy_model(small_run, tmp_path, {"labels": "positive"})
    err = _one_line_error(capsys, ["predict", str(folder), "a fine film"])
    assert "nlpkit_task.json is not a valid nlpkit model descriptor: `info.labels` is 'positive', expected list" in err


# ---------------------------------------------------------------------------------------------- item 12: one line


def _evil_pickle(path: Path) -> Path:
    """A torch file whose unpickling would run a shell command."""
    import os

    import torch

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo PWNED",))

    torch.save({"weight": Evil()}, path)
    return path


def test_pickled_bin_weights_are_refused_in_one_line(tiny_bert: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    import shutil

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "bin-model"))
    (folder / "model.safetensors").unlink()
    _evil_pickle(folder / "pytorch_model.bin")
    err = _one_line_error(capsys, ["predict", str(folder), "a fine film", "--task", "sentiment"])
    assert f"Refusing to load {folder}/pytorch_model.bin: a Python pickle that holds more than tensors" in err
    assert "PWNED" not in capsys.readouterr().out


def test_pickled_optimizer_state_is_refused_naming_the_file(tmp_path: Path) -> None:
    from nlpkit.errors import UnsafeFileError
    from nlpkit.training import check_checkpoint

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    _evil_pickle(ckpt / "optimizer.bin")
    with pytest.raises(UnsafeFileError, match=r"Refusing to resume from .*checkpoint-4: optimizer\.bin holds more "
                                              r"than tensors"):
        check_checkpoint(ckpt)


def test_a_malformed_checkpoint_state_is_one_error(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-3"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text('{"global_step": 3, "epoch": 0}')
    with pytest.raises(ModelNotFoundError, match=r"Cannot resume from .*checkpoint-3: trainer_state\.json has no "
                                                 r"`batches_in_epoch`"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "run",
                                                        **{"resume": str(ckpt), "train.max_steps": 2}))
    (ckpt / "trainer_state.json").write_text("{not json")
    from nlpkit.training import read_state

    with pytest.raises(ModelNotFoundError, match=r"trainer_state\.json is not readable JSON"):
        read_state(ckpt)


@pytest.mark.parametrize(("body", "expected"), [
    ("{oops", r"not JSON"),
    ("[1, 2]", r"expected a JSON object with `task`, `config` and `info`, found a list"),
    ('{"task": "sentiment"}', r"it has no `config` key"),
    ('{"task": "sentiment", "config": [], "info": {}}', r"`config` is a list, expected a JSON object"),
])
def test_a_malformed_descriptor_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            body: str, expected: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "nlpkit_task.json").write_text(body)
    err = _one_line_error(capsys, ["predict", str(folder), "a fine film"])
    assert f"{folder}/nlpkit_task.json is not a valid nlpkit model descriptor" in err
    assert __import__("re").search(expected, err), err


def test_a_bad_value_in_a_descriptor_config_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "nlpkit_task.json").write_text(json.dumps({"task": "sentiment", "config": {"labels": "positive"},
                                                         "info": {}}))
    err = _one_line_error(capsys, ["predict", str(folder), "a fine film"])
    assert f"Bad value for `labels` in {folder}/nlpkit_task.json" in err


def test_a_malformed_report_in_the_demo_is_one_error(tmp_path: Path) -> None:
    from nlpkit.demo import run_summary

    (tmp_path / "report.json").write_text('{"task": "sentiment", ')
    with pytest.raises(ModelNotFoundError, match=r"report\.json is not valid JSON .*Restore the file, or remove it"):
        run_summary(tmp_path)
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(ModelNotFoundError, match=r"report\.json holds a list"):
        run_summary(tmp_path)


def test_onnx_weights_outside_the_export_are_refused_in_one_line(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from nlpkit.errors import UnsafeFileError
    from nlpkit.onnx_runtime import open_session, session_options

    export = tmp_path / "export"
    export.mkdir()
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save_model(helper.make_model(graph), str(export / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(export / "model.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../outside.bin"  # a crafted export naming a file beside it
    (export / "w.bin").rename(tmp_path / "outside.bin")
    onnx.save_model(model, str(export / "model.onnx"))
    with pytest.raises(UnsafeFileError, match=r"model\.onnx: its weights are stored in a file outside the export"):
        open_session(export / "model.onnx", session_options(1))
    (export / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelNotFoundError, match=r"model\.onnx cannot be loaded by ONNX Runtime"):
        open_session(export / "model.onnx", session_options(1))


@pytest.mark.parametrize("kind", ["driver", "not a database", "missing folder"])
def test_optuna_storages_that_cannot_be_opened_are_one_error(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("optuna")
    from nlpkit.tune import open_storage

    if kind == "driver":
        storage, expected = "postgresql://nobody@localhost/study", r"the Python driver for postgresql is not " \
                                                                   r"installed: pip install psycopg2-binary"
        pytest.importorskip("sqlalchemy")
        if __import__("importlib").util.find_spec("psycopg2") is not None:
            pytest.skip("a PostgreSQL driver is installed here")
    elif kind == "not a database":
        (tmp_path / "notes.db").write_text("my notes, not a database\n" * 50)
        storage = str(tmp_path / "notes.db")
        expected = r"cannot be opened as an Optuna study database: .*not a database"
    else:
        storage, expected = f"sqlite:///{tmp_path}/missing/study.db", r"the folder .*missing does not exist"
    with pytest.raises(ConfigError, match=expected):
        open_storage(storage, tmp_path)


def test_a_binary_search_space_file_is_one_error(tmp_path: Path) -> None:
    from nlpkit.tune import load_space

    space = tmp_path / "space.yaml"
    space.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=r"Search space .*space\.yaml is not text"):
        load_space(space, SentimentConfig)


class _EchoTask:
    """Just enough of a task for :func:`nlpkit.predict_file.predict_file`."""

    def prediction_input_column(self) -> str:
        return "text"

    def prediction_columns(self, inputs: list, outputs: list) -> dict:
        return {"prediction": outputs}


class _EchoPipe:
    task = _EchoTask()

    def __call__(self, texts: list, batch_size: int = 64) -> list:
        return [t.upper() for t in texts]


def test_predict_refuses_an_empty_parquet_in_one_line(tmp_path: Path) -> None:
    from nlpkit.predict_file import predict_file

    (tmp_path / "in.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"in\.parquet is empty \(0 bytes\)"):
        predict_file(_EchoPipe(), tmp_path / "in.parquet", tmp_path / "out.csv", progress=False)


def test_predict_names_the_rows_whose_column_type_changes(tmp_path: Path) -> None:
    from nlpkit.predict_file import predict_file

    rows = [{"id": i, "text": f"row {i}"} for i in range(3)] + [{"id": f"x{i}", "text": f"row {i}"} for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"Input rows 4-6 change the type of column 'id' \(int64 in earlier rows, "
                                        r"(large_)?string here\).*one type per column"):
        predict_file(_EchoPipe(), tmp_path / "in.jsonl", tmp_path / "out.parquet", chunk_rows=3, progress=False)
    assert not (tmp_path / "out.parquet").exists()


def test_mixed_number_and_text_labels_are_one_error(tmp_path: Path) -> None:
    rows = [{"text": t, "label": 1 if label == "positive" else "negative"} for t, label in sentiment_rows(60)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"the label column 'label' mixes values of different kinds \(int, str; "
                                        r"e\.g\. .*mixed\.jsonl line \d+ .*Write every label in one form"):
        _task(**{"data.source": str(path)}).load_data()


def test_an_mlflow_file_store_is_refused_before_the_run_with_the_sqlite_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from nlpkit.trackers import check_trackers

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    with pytest.raises(ConfigError, match=rf"MLFLOW_TRACKING_URI=file://{tmp_path}/mlruns is a folder .*Use a "
                                          rf"database: MLFLOW_TRACKING_URI=sqlite:///{tmp_path}/mlflow\.db"):
        check_trackers(["tensorboard", "mlflow"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    check_trackers(["tensorboard", "mlflow"])


def test_an_unreachable_hub_id_is_one_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline (or a wrong id), a hub id gets one line naming it and the ways out, not transformers' traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _one_line_error(capsys, ["predict", "--task", "sentiment", "some-org/no-such-model", "a fine film"])
    assert "some-org/no-such-model is not a local folder" in err and "catalog name" in err
