"""The core pieces every task shares: loop events, errors, presets, batched inference, atomic folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import sentiment_overrides

import nlpkit
from nlpkit.callbacks import Callback
from nlpkit.errors import ConfigError, NlpkitError, UsageError


class Recorder(Callback):
    """Writes down every event the loop fires, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def before_training(self, loop) -> None:
        self.events.append("before_training")
        assert not hasattr(loop, "optimizer"), "before_training comes before the optimizer exists"

    def on_log(self, loop, values, step) -> None:
        self.events.append("on_log:" + ("eval" if any(k.startswith("eval/") for k in values) else "train"))

    def after_evaluation(self, loop, metrics) -> None:
        self.events.append("after_evaluation")
        assert "accuracy" in metrics

    def on_train_end(self, loop) -> None:
        self.events.append("on_train_end")
        assert loop.finished and loop.results.test is None, "on_train_end comes before the final evaluation"

    def on_best_model_loaded(self, loop, step, value) -> None:
        self.events.append(f"on_best_model_loaded:{step}")

    def on_save(self, loop, directory: Path) -> None:
        self.events.append("on_save")
        assert (directory / "nlpkit_task.json").exists() and not (loop.run_dir / "best_model").exists()

    def after_training(self, loop) -> None:
        self.events.append("after_training")
        assert loop.results.test["accuracy"] >= 0, "after_training sees the final metrics"


def test_loop_fires_its_events_in_order(tiny_bert: Path, sentiment_data: Path, tmp_path: Path) -> None:
    """A task's callbacks see every event, in the documented order; the best model comes back before the end."""
    from nlpkit.plugins.sentiment import SentimentTask
    from nlpkit.registry import register_task

    recorder = Recorder()

    class RecordingSentiment(SentimentTask):
        def callbacks(self):
            return [recorder]

    register_task("sentiment_recorded")(RecordingSentiment)
    # lr 0.5 makes the second half of training worse than the first evaluation: the best model is step 5
    report = nlpkit.train("sentiment_recorded", **sentiment_overrides(tiny_bert, sentiment_data, tmp_path / "run", **{
        "train.max_steps": 10, "train.eval_every": 5, "train.log_every": 5}))
    ev = recorder.events
    assert ev[0] == "before_training" and ev[-2:] == ["on_save", "after_training"]
    assert ev.count("after_evaluation") == 2 and ev.count("on_log:train") == 2 and ev.count("on_log:eval") == 2
    assert ev.index("on_train_end") > max(i for i, e in enumerate(ev) if e == "after_evaluation")
    loaded = [e for e in ev if e.startswith("on_best_model_loaded")]
    if report["best"]["step"] != 10:  # the best weights were not the last ones: they came back
        assert loaded == [f"on_best_model_loaded:{report['best']['step']}"]
    assert report["task"] == "sentiment_recorded"


def test_every_nlpkit_error_is_one_line_on_the_command_line(capsys: pytest.CaptureFixture) -> None:
    """The CLI recognises errors by type (NlpkitError), whatever module raised them."""
    from nlpkit.cli import console_main

    with pytest.raises(SystemExit) as exit_info:
        console_main(["presets", "sentimnt"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown task 'sentimnt'") and "Did you mean 'sentiment'" in err
    assert "\n" not in err


def test_presets_are_chosen_by_name_and_belong_to_their_task(tmp_path: Path) -> None:
    from nlpkit.cli import parse_task_args
    from nlpkit.registry import find_preset

    cfg, _ = parse_task_args("sentiment", ["quick", "train.lr=3e-5"])
    assert cfg.data.max_train_samples == 2000 and cfg.train.lr == 3e-5
    with pytest.raises(ConfigError, match="Did you mean 'quick'"):
        find_preset("sentiment", "quik")
    other = tmp_path / "other.yaml"
    other.write_text("task: translation\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="is for the translation task"):
        find_preset("sentiment", str(other))


def test_run_sorted_batches_longest_first_and_restores_order() -> None:
    from nlpkit.inference import pad, run_sorted

    items = ["bb", "a", "dddd", "ccc", "e"]
    seen: list[list[str]] = []

    def fn(batch: list[str]) -> list[str]:
        seen.append(batch)
        return [x.upper() for x in batch]

    out = run_sorted(items, [len(x) for x in items], 2, fn)
    assert out == [x.upper() for x in items]
    assert seen == [["dddd", "ccc"], ["bb", "a"], ["e"]]
    ids, mask = pad([[1, 2, 3], [4]], 0, side="left")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(UsageError):
        run_sorted(items, [1] * 5, 0, fn)


def test_progress_bars_show_when_asked_and_tqdm_disable_hides_them(capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nlpkit.inference import run_sorted

    items = ["a", "bb", "ccc"]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    run_sorted(items, [len(x) for x in items], 1, lambda b: b, desc="Counting", progress=True)
    assert "Counting" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")  # tqdm's own switch: nlpkit's bars pass `disable`, so it checks it
    run_sorted(items, [len(x) for x in items], 1, lambda b: b, desc="Counting", progress=True)
    assert "Counting" not in capsys.readouterr().err


def test_sorted_batches_end_where_padding_would_waste_much() -> None:
    from nlpkit.inference import sorted_batches

    # a server's batch mixes lengths: 60-token inputs must not pad 12-token ones to 60
    lengths = [12, 60, 58, 30, 11, 59, 29, 10]
    batches = list(sorted_batches(lengths, 64))
    assert [[lengths[i] for i in b] for b in batches] == [[60, 59, 58], [30, 29], [12, 11, 10]]
    # neighbours of a length-sorted file (a token or two apart) keep full batches, short inputs included
    assert [len(b) for b in sorted_batches([40 - i // 10 for i in range(100)], 32)] == [32, 32, 32, 4]
    assert [len(b) for b in sorted_batches([3, 9, 5, 1], 8)] == [4]  # within PADDING_FLOOR tokens


def test_atomic_dir_leaves_nothing_half_written(tmp_path: Path) -> None:
    from nlpkit.artifacts import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_generate_config_checks_itself_and_builds_generate_arguments() -> None:
    from nlpkit.config import GenerateConfig

    g = GenerateConfig(max_new_tokens=8)
    assert g.generate_kwargs() == {"max_new_tokens": 8, "num_beams": 1, "do_sample": False,
                                   "num_return_sequences": 1}
    sampled = g.replace(do_sample=True, temperature=0.7, no_repeat_ngram_size=3).generate_kwargs()
    assert sampled["temperature"] == 0.7 and sampled["no_repeat_ngram_size"] == 3
    for bad in ({"no_repeat_ngram_size": -1}, {"max_new_tokens": 0}, {"num_return_sequences": 2}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            g.replace(**bad)
    with pytest.raises(UsageError, match="Unknown decoding option"):
        g.replace(beams=4)
    assert issubclass(ConfigError, NlpkitError) and issubclass(ConfigError, ValueError)
