"""Config: defaults <- preset <- overrides, typed, with helpful errors; --help; the saved config reloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nlpkit.cli import parse_task_args
from nlpkit.config import ConfigError, load_config, save_config
from nlpkit.plugins.sentiment import SentimentConfig


def test_layers_merge_in_order(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  lr: 1.0e-3\n  epochs: 3\ndata:\n  max_length: 64\n")
    cfg = load_config(SentimentConfig, preset, ["train.lr=3e-5", "data.max_train_samples=500"])
    assert cfg.train.lr == 3e-5 and cfg.train.epochs == 3.0 and cfg.data.max_length == 64
    assert cfg.data.max_train_samples == 500 and cfg.model.name == "minilm-l6"  # untouched default
    assert isinstance(cfg.train.epochs, float)


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=3e-5", "Did you mean `train.lr`"),
    ("lr=3e-5", "Did you mean `train.lr`"),
    ("data.text_col=review", "data.text_column"),
    ("train.batch_size=big", "Bad value for `train.batch_size`"),
    ("train.group_by_length=maybe", "train.group_by_length"),
])
def test_bad_overrides_say_what_to_do(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_config(SentimentConfig, None, [override])


def test_bad_preset_key_names_the_file(tmp_path: Path) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epoch.*bad\.yaml.*train\.epochs"):
        load_config(SentimentConfig, preset)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(SentimentConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="overrides are key=value"):
        parse_task_args("sentiment", ["train.lr=1", "oops"])


def test_saved_config_reloads_identically(tmp_path: Path) -> None:
    cfg = load_config(SentimentConfig, None, ["train.lr=2e-5", "labels=[neg,pos]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(SentimentConfig, tmp_path / "config.yaml") == cfg


def test_every_preset_in_the_repo_loads() -> None:
    """Presets only hold differences from defaults; each must still validate against its task's schema."""
    from nlpkit.registry import available_tasks, find_preset, get_task

    seen = 0
    for task in available_tasks():
        for name, preset in get_task(task).presets().items():
            assert find_preset(task, name) == preset  # chosen by name, and it declares its own task
            load_config(get_task(task).Config, preset)
            header = "\n".join(ln for ln in preset.read_text().splitlines() if ln.startswith("#"))
            assert f"tasks/{task}.py {name}" in header, f"{preset} needs its by-name launch line in a header comment"
            seen += 1
    assert seen >= 10
    assert not list(Path("tasks").rglob("*.yaml")), "presets live in their task's package"


def test_help_lists_every_option_with_its_meaning() -> None:
    out = subprocess.run([sys.executable, "tasks/sentiment.py", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    from nlpkit.config import flat_keys

    for key in flat_keys(SentimentConfig):
        assert f"{key}=" in out.stdout, f"--help does not list {key}"
    assert "Peak learning rate" in out.stdout and "accelerate launch" in out.stdout


def test_cli_error_is_one_clear_line() -> None:
    out = subprocess.run([sys.executable, "tasks/sentiment.py", "train.lrr=1"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: Unknown config key `train.lrr`")
    assert "Traceback" not in out.stderr
