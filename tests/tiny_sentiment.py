"""Tiny sentiment setup for the contract test."""

from pathlib import Path

import pytest
from conftest import sentiment_overrides

SAMPLE_INPUTS = ["a great and moving film", "boring", "", "the plot was dull at times " * 30]


def tiny_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    return sentiment_overrides(request.getfixturevalue("tiny_bert"), request.getfixturevalue("sentiment_data"),
                               tmp_path / "run", **{"train.max_steps": 6})
