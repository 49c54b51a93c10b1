"""The report writer's table formatting."""

from __future__ import annotations

from nlpkit.report import md_table


def test_md_table_rounds_floats_without_padding_zeros() -> None:
    table = md_table([("bleu", 8.14), ("chrf", 20.41237), ("zero", 0.0), ("big", 12345.678), ("n", 7),
                      ("text", "a|b")], ["metric", "value"])
    cells = [line.split(" | ")[1].rstrip(" |") for line in table.splitlines()[2:]]
    assert cells == ["8.14", "20.4124", "0", "12,345.7", "7", "a\\|b"]


def test_model_card_names_hub_ids_and_loads_with_huggingface_hub(tmp_path) -> None:
    """base_model/datasets are hub ids where the catalog knows them; the card parses as a hub card."""
    from huggingface_hub import ModelCard

    from nlpkit.registry import get_task
    from nlpkit.report import model_card

    cls = get_task("sentiment")
    report = {"test": {"accuracy": 0.8329, "macro_f1": 0.8293, "samples": 1275}, "run_dir": str(tmp_path / "run"),
              "config": {"model": "minilm-l6"}, "training": {"updates": 638}}
    text = model_card(cls(cls.Config()), report, "rotten_tomatoes")
    (tmp_path / "README.md").write_text(text)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.datasets == ["cornell-movie-review-data/rotten_tomatoes"]
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {"accuracy": 0.8329, "macro_f1": 0.8293}
    assert "pypi.org/project/nlpkit/" not in text  # that name belongs to an unrelated package on the index
    # a model trained from a local folder claims no hub base model
    report["config"]["model"] = str(tmp_path)
    assert ModelCard(model_card(cls(cls.Config()), report, "my.csv")).data.base_model is None
