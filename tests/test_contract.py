"""The contract every registered task honours: train a few steps -> evaluate -> save -> reload -> same results."""

from __future__ import annotations

import pytest

from nlpkit.registry import available_tasks
from nlpkit.testing import check_task_contract


@pytest.mark.parametrize("task", available_tasks())
def test_task_contract(task: str, tiny_task_config) -> None:
    overrides, inputs = tiny_task_config(task)
    check_task_contract(task, overrides, inputs)
