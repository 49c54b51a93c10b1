"""The contract every registered task honours: train a few steps -> evaluate -> save -> reload -> same results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nlpkit
from nlpkit.registry import available_tasks


def check_task_contract(task: str, overrides: dict, inputs: list) -> dict:
    """Train ``task`` briefly with ``overrides``, then check what every task promises; returns the report.

    Also used by the test of a task installed from outside the ``nlpkit`` package (tests/test_plugins.py).
    """
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
    assert again[main] == pytest.approx(report["test"][main], rel=1e-5, abs=1e-6), f"{task}: {main} changed"
    # the pipeline serves the saved run: batched results equal one-at-a-time results, in input order
    pipe = nlpkit.pipeline(str(run), device="cpu")
    batched = pipe(inputs, batch_size=2)
    assert len(batched) == len(inputs)
    assert _close(batched, [pipe(x) for x in inputs]), f"{task}: batched and single predictions differ"
    return report


@pytest.mark.parametrize("task", available_tasks())
def test_task_contract(task: str, tiny_task_config) -> None:
    overrides, inputs = tiny_task_config(task)
    check_task_contract(task, overrides, inputs)


def _close(a: object, b: object) -> bool:
    """Equal, with floats compared to 1e-4 (padding changes the last bits of a batched forward pass)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-4 * max(1.0, abs(a))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b
