"""The report writer's table formatting."""

from __future__ import annotations

from nlpkit.report import md_table


def test_md_table_rounds_floats_without_padding_zeros() -> None:
    table = md_table([("bleu", 8.14), ("chrf", 20.41237), ("zero", 0.0), ("big", 12345.678), ("n", 7),
                      ("text", "a|b")], ["metric", "value"])
    cells = [line.split(" | ")[1].rstrip(" |") for line in table.splitlines()[2:]]
    assert cells == ["8.14", "20.4124", "0", "12,345.7", "7", "a\\|b"]
