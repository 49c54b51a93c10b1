"""The core is closed: a task folder alone (no core edit) is found as a task, its catalog entries and metrics are
found, and an export kind a plugin defines is exported, recorded and opened again by the loader."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import nlpkit.plugins
from nlpkit import assets, loader, metrics, registry
from nlpkit.artifacts import write_descriptor
from nlpkit.errors import AssetError, UsageError
from nlpkit.onnx_runtime import DESCRIPTOR_KEY, EncoderKind, ExportKind, export_kinds, get_export_kind

TOY_PLUGIN = {
    "__init__.py": '''
        from nlpkit.plugins.toyhook.task import ToyTask
        __all__ = ["ToyTask"]
    ''',
    "task.py": '''
        from nlpkit.task import Task

        class ToyTask(Task):
            def load_data(self): raise NotImplementedError
            def build_model(self, info): raise NotImplementedError
            def predict(self, inputs, batch_size=64, **kwargs): return [len(x) for x in inputs]
            def encode(self, batch): return batch
            def collate(self, features): return features
            def eval_step(self, model, batch): return {}
            def compute_metrics(self, outputs): return {}
        ''',
    "catalog.py": '''
        from nlpkit.assets import Asset

        def _convert(archive, out_dir):
            (out_dir / "data.txt").write_text("toy")

        ASSETS = [Asset(name="toyhook-data", kind="dataset", package="toy-pkg", version="1.0", sha256="0" * 64,
                        member="toy/data.txt", size_mb=0.1, license="CC0", description="a toy entry",
                        convert=_convert)]
        ''',
    "spaces/small.yaml": '''
        seed: {type: int, low: 1, high: 3}
        ''',
    "metrics/toyhook_overlap/toyhook_overlap.py": '''
        import datasets
        import evaluate


        class ToyhookOverlap(evaluate.Metric):
            def _info(self):
                return evaluate.MetricInfo(description="share of equal items", citation="", inputs_description="",
                                           features=datasets.Features({"predictions": datasets.Value("int64"),
                                                                       "references": datasets.Value("int64")}))

            def _compute(self, predictions, references):
                same = sum(p == r for p, r in zip(predictions, references))
                return {"overlap": same / len(references)}
        ''',
}


@pytest.fixture
def toy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin folder ``toyhook`` beside the built-in ones (as a new task would add it), nothing else changed."""
    root = tmp_path / "plugins"
    for rel, text in TOY_PLUGIN.items():
        path = root / "toyhook" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    monkeypatch.setattr(nlpkit.plugins, "__path__", [*nlpkit.plugins.__path__, str(root)])
    builtin = registry._builtin_plugins()
    monkeypatch.setattr(registry, "_builtin_plugins", lambda: sorted({*builtin, "toyhook"}))
    # the built-in plugins' entries first, then the catalogs found in the new folder
    monkeypatch.setattr(assets, "CATALOG", dict(assets.catalog()))
    monkeypatch.setattr(assets, "_PLUGINS_DIR", root)
    monkeypatch.setattr(assets, "_LOADED", False)
    monkeypatch.setattr(metrics, "_PLUGINS_DIR", root)
    monkeypatch.setattr(metrics, "_EXTRA_DIRS", [])  # what registering the toy task adds goes with the test
    yield root
    registry._TASKS.pop("toyhook", None)
    for name in [m for m in sys.modules if m.startswith("nlpkit.plugins.toyhook")]:
        del sys.modules[name]


def test_a_plugin_folder_is_a_task_with_its_catalog_and_metrics(toy_plugin: Path) -> None:
    assert "toyhook" in registry.available_tasks()
    cls = registry.get_task("toyhook")
    assert cls.__name__ == "ToyTask" and cls.name == "toyhook"
    assert registry.get_task("sentiment").name == "sentiment"  # the built-ins are found the same way
    # its catalog entry joins the core's, found by folder
    assert assets.is_catalog_name("toyhook-data") and assets.get_asset("toyhook-data").license == "CC0"
    assert {"minilm-l6", "rotten_tomatoes", "bible-en-fr", "shakespeare", "glove-6b-50d"} <= set(assets.catalog())
    # its metric loads by name like the core's, and computes
    assert "toyhook_overlap" in metrics.available_metrics() and "accuracy" in metrics.available_metrics()
    assert metrics.compute("toyhook_overlap", predictions=[1, 2, 3, 4], references=[1, 2, 0, 0]) == {"overlap": 0.5}


def test_a_catalog_name_declared_twice_is_refused(toy_plugin: Path) -> None:
    catalog = toy_plugin / "toyhook" / "catalog.py"
    catalog.write_text(catalog.read_text().replace('name="toyhook-data"', 'name="rotten_tomatoes"'))
    with pytest.raises(AssetError, match="'rotten_tomatoes' is declared twice"):
        assets.catalog()


def test_a_metric_name_defined_twice_is_refused(toy_plugin: Path) -> None:
    (toy_plugin / "toyhook" / "metrics" / "toyhook_overlap").rename(toy_plugin / "toyhook" / "metrics" / "accuracy")
    folder = toy_plugin / "toyhook" / "metrics" / "accuracy"
    (folder / "toyhook_overlap.py").rename(folder / "accuracy.py")
    with pytest.raises(ValueError, match="metric 'accuracy' is defined twice"):
        metrics.metric_path("accuracy")


class _MeanPooled(torch.nn.Module):
    """What an embeddings plugin would export: mean pooling over the tokens, inside the graph."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class _PooledKind(EncoderKind):
    def module(self, model: torch.nn.Module) -> torch.nn.Module:
        return _MeanPooled(model)


def test_a_plugin_defined_export_kind_exports_and_opens_through_the_loader(tiny_bert: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from transformers import AutoModel, AutoTokenizer

    kind = _PooledKind("test-pooled-encoder", {"sentence_embedding": {0: "batch"}})
    assert get_export_kind("test-pooled-encoder") is kind and "classifier" in export_kinds()
    model = AutoModel.from_pretrained(tiny_bert).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    folder = tmp_path / "export"
    folder.mkdir()
    entry = kind.export(model, folder, 17, optimize=False)
    assert entry["graphs"] == ["model.onnx"]
    tokenizer.save_pretrained(folder)
    kind.write_files(model, folder)
    write_descriptor(folder, "toyhook", {"task": "toyhook"}, {}, **{DESCRIPTOR_KEY: {**entry, "kind": kind.name}})
    # the loader opens it by the kind its descriptor names, as a model the task's predict can call
    opened = loader.load(None, str(folder))
    assert loader.runs_on_onnx(opened)
    texts = ["a short one", "a somewhat longer sentence with more words in it", "x"]
    assert kind.max_abs_diff(model, opened, tokenizer, texts, 32) < 1e-4
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    got = opened(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).sentence_embedding
    assert got.shape == (3, model.config.hidden_size)
    # pooling is in the graph: a padded row gives its own vector, not its padding's
    alone = opened(**{k: v[2:3, :3] for k, v in enc.items() if k != "token_type_ids"}).sentence_embedding
    assert torch.allclose(alone[0], got[2], atol=1e-4)


def test_an_export_of_an_unknown_kind_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_descriptor(folder, "somewhere", {"task": "somewhere"}, {}, **{DESCRIPTOR_KEY: {"kind": "hologram"}})
    with pytest.raises(UsageError, match="kind 'hologram', which no installed task plugin defines"):
        loader.load(None, str(folder))
    with pytest.raises(ValueError, match="already defined"):
        class _Other(ExportKind):
            pass
        _Other("classifier")
    assert json.loads((folder / "nlpkit_task.json").read_text())["onnx"]["kind"] == "hologram"


def test_a_plugin_ships_its_tune_space_and_encoder_lora(toy_plugin: Path, tiny_bert: Path) -> None:
    from transformers import AutoModel

    from nlpkit.errors import ConfigError
    from nlpkit.lora import apply_lora, trainable_parameters
    from nlpkit.tune import find_space, load_space

    cls = registry.get_task("toyhook")
    path = find_space(cls, "small")
    assert path == toy_plugin / "toyhook" / "spaces" / "small.yaml"
    assert set(load_space(path, cls.Config)) == {"seed"}
    with pytest.raises(ConfigError, match="ships no space of that name \\(small\\)"):
        find_space(cls, "large")
    # a bare encoder (an embeddings task's model) and a token classifier take LoRA adapters too
    model = apply_lora(AutoModel.from_pretrained(tiny_bert), task_type="FEATURE_EXTRACTION")
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total


def test_write_parquet_keeps_plain_strings_inside_lists(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"tokens": pa.array([["EU", "rejects"], ["x"]], pa.large_list(pa.large_string())),
                      "text": pa.array(["a", "b"], pa.large_string())})
    assets.write_parquet(table, tmp_path)
    schema = pq.read_schema(tmp_path / "data.parquet")
    assert schema.field("tokens").type == pa.list_(pa.string()) and schema.field("text").type == pa.string()
