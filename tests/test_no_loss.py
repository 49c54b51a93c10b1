"""Nothing a user has is lost: run folders (``output_dir``, ``overwrite``), ``nlpkit export --out`` and
``nlpkit predict --output`` never replace or delete what nlpkit did not write, unless told to."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sentiment_overrides, sentiment_rows, write_csv

import nlpkit
from nlpkit.cli import console_main
from nlpkit.errors import ConfigError, NlpkitError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    return nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out))["run_dir"]


def _args(cfg: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in cfg.items()]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    capsys.readouterr()  # what earlier commands printed
    with pytest.raises(SystemExit) as exit_info:
        console_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------------------------------- item 6: run folders


def test_a_run_refuses_a_users_folder_and_writes_nothing_into_it(tiny_bert: Path, sentiment_data: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "weights.bin").write_text("my own weights")
    (mine / "report.md").write_text("my notes")
    before = _files(mine)
    err = _one_line_error(capsys, ["train", "sentiment",
                                   *_args(sentiment_overrides(tiny_bert, sentiment_data, mine))])
    assert f"output_dir={mine}" in err and "overwrite=true" in err and "resume=auto" in err
    assert _files(mine) == before, "nothing may be written (not even config.yaml) into a refused folder"
    err = _one_line_error(capsys, ["train", "sentiment", *_args(sentiment_overrides(
        tiny_bert, sentiment_data, mine / "report.md" / "run"))])
    assert f"{mine / 'report.md'} is a file" in err


def test_another_run_is_replaced_only_with_overwrite(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out))
    (out / "notes.txt").write_text("mine")
    before = _files(out)
    with pytest.raises(ConfigError, match=r"already holds another run.*overwrite=true"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, seed=7))
    assert _files(out) == before
    # a complete checkpoint of the earlier run must not survive into the new one (resume=auto would pick it)
    old = out / "checkpoint-999"
    old.mkdir()
    (old / "trainer_state.json").write_text(json.dumps({"global_step": 999}))
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out, seed=7,
                                                             overwrite=True))
    assert report["config"]["seed"] == 7 and json.loads((out / "report.json").read_text())["config"]["seed"] == 7
    assert (out / "notes.txt").read_text() == "mine", "overwrite=true replaces the run, not the user's files"
    assert not old.exists()


def test_a_failed_run_leaves_no_folder_behind(tiny_bert: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", sentiment_rows(40), header=("review", "label"))  # no `text` column
    new = tmp_path / "runs" / "new"
    with pytest.raises(NlpkitError, match="text"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, bad, new, trackers=["tensorboard"]))
    assert not new.exists(), f"left behind: {sorted(p.name for p in new.iterdir())}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NlpkitError, match="text"):
        nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, bad, empty, trackers=["tensorboard"]))
    assert empty.is_dir() and not list(empty.iterdir()), "an empty folder the user made stays, empty"


def test_runs_started_in_the_same_second_get_their_own_default_folders(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from nlpkit.training import RunFolder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000")
    first, second = RunFolder.claim(None, "sentiment"), RunFolder.claim(None, "sentiment")
    assert first.path == Path("outputs/sentiment-20260101-000000")
    assert second.path == Path("outputs/sentiment-20260101-000000-2") and second.path.is_dir()


def test_export_touches_nothing_beside_its_folder_and_replaces_only_an_export(run: str, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture
                                                                              ) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "x"
    (tmp_path / "x.tmp").mkdir()
    (tmp_path / "x.tmp" / "mine.txt").write_text("mine")
    console_main(["export", run, "--out", str(out)])
    assert (out / "model.onnx").is_file()
    assert (tmp_path / "x.tmp" / "mine.txt").read_text() == "mine", "an unrelated X.tmp/ beside --out was touched"
    err = _one_line_error(capsys, ["export", run, "--out", str(out)])
    assert "--overwrite" in err
    console_main(["export", run, "--out", str(out), "--overwrite"])
    assert (out / "model.onnx").is_file()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("mine")
    err = _one_line_error(capsys, ["export", run, "--out", str(notes), "--overwrite"])
    assert "not an nlpkit ONNX export" in err and (notes / "a.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "x", "x.tmp"], "no temporary left behind"


# ------------------------------------------------------------------------------------------- item 7: predict


def _input(tmp_path: Path, n: int = 30) -> Path:
    return write_csv(tmp_path / "in.csv", sentiment_rows(n, seed=5))


def test_predict_keeps_an_existing_output_unless_overwrite(run: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    src, dst = _input(tmp_path), tmp_path / "out.csv"
    dst.write_text("my earlier results\n")
    err = _one_line_error(capsys, ["predict", run, "--input", str(src), "--output", str(dst)])
    assert str(dst) in err and "--overwrite" in err
    assert dst.read_text() == "my earlier results\n"
    console_main(["predict", run, "--input", str(src), "--output", str(dst), "--overwrite"])
    assert len(pd.read_csv(dst)) == 30 and "label" in pd.read_csv(dst).columns


def test_predict_output_problems_are_one_line_before_the_model_loads(run: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded (and rows predicted) before the output was checked")

    monkeypatch.setattr(importlib.import_module("nlpkit.pipeline"), "pipeline", no_model)
    src = _input(tmp_path)
    folder = tmp_path / "results.csv"
    folder.mkdir()
    err = _one_line_error(capsys, ["predict", run, "--input", str(src), "--output", str(folder)])
    assert str(folder) in err and "is a folder" in err
    missing = tmp_path / "no-such-folder" / "out.csv"
    err = _one_line_error(capsys, ["predict", run, "--input", str(src), "--output", str(missing)])
    assert str(missing.parent) in err and "does not exist" in err
    assert not missing.parent.exists()


_WRITER = """
import sys
from pathlib import Path

import pandas as pd

from nlpkit.predict_file import _Writer

writer = _Writer(Path(sys.argv[1]))
writer.write(pd.DataFrame({"text": ["a"], "label": ["positive"]}))
print(writer.tmp, flush=True)
sys.stdin.read()  # a prediction still running: until it is killed
"""


def test_a_killed_predictions_temporary_is_removed_by_the_next_run_never_a_live_ones(run: str,
                                                                                     tmp_path: Path) -> None:
    src, dst = _input(tmp_path), tmp_path / "out.csv"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(dst)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        partial = Path(writer.stdout.readline().strip())
        assert partial.parent == tmp_path and partial.name.startswith(".out.csv") and partial.is_file()
        # another prediction to the same output while the first is alive: it must not touch the first's file
        console_main(["predict", run, "--input", str(src), "--output", str(dst)])
        assert partial.is_file(), "a second run deleted the temporary of a prediction still running"
        assert len(pd.read_csv(dst)) == 30
    finally:
        writer.send_signal(signal.SIGKILL)  # kill -9: no clean-up in the writer
        writer.wait(timeout=30)
    assert partial.is_file()
    console_main(["predict", run, "--input", str(src), "--output", str(dst), "--overwrite"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"], "a killed run's temporary stayed"
