"""The ner task: tag schemes and CoNLL reading, learning planted entities, spans equal to transformers'
token-classification pipeline, nlpkit predict, the serve route, the demo and the int8 export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_ner import ner_data, ner_overrides, ner_rows, tiny_ner_model, write_conll, write_jsonl

import nlpkit
from nlpkit.config import load_config
from nlpkit.errors import DataError
from nlpkit.plugins.ner.spans import group_spans
from nlpkit.plugins.ner.tags import TagCheck, entities, guess_scheme, to_iob2

TEXTS = ["anna went to paris", "we met carla mendez in new york today", "", "hugo saw elena vogel at rio",
         "nothing here at all", "boris and dmitri visited san diego and cape town"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_ner_model(tmp_path_factory.mktemp("tiny-ner-model"))


@pytest.fixture(scope="module")
def ner_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained for 4 epochs on planted entities (a few seconds on one CPU thread)."""
    base = tmp_path_factory.mktemp("ner-run")
    return nlpkit.train("ner", **ner_overrides(tiny_model, ner_data(base / "data"), base / "run",
                                               **{"train.epochs": 4.0}))


# ------------------------------------------------------------------------------------------- tag schemes


def test_iob1_and_bioes_become_iob2() -> None:
    # IOB1: I- opens an entity; B- only separates two adjacent entities of one type
    assert to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "IOB1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert to_iob2(["S-PER", "B-LOC", "I-LOC", "E-LOC", "U-ORG", "B-X", "L-X"], "BIOES") == \
        ["B-PER", "B-LOC", "I-LOC", "I-LOC", "B-ORG", "B-X", "I-X"]
    assert guess_scheme([["O", "B-PER", "E-PER"]]) == "BIOES" and guess_scheme([["B-PER", "I-PER"]]) == "IOB2"
    assert entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == \
        [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 6)]


def test_an_i_tag_opening_an_entity_is_repaired_and_counted_or_refused() -> None:
    check = TagCheck()
    assert to_iob2(["O", "I-PER", "I-PER", "B-LOC", "I-ORG"], "IOB2", check=check) == \
        ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]
    assert check.repaired == {"PER": 1, "ORG": 1} and check.rows_repaired == 1
    with pytest.raises(DataError, match=r"row 7: tag 'I-PER' opens an entity"):
        to_iob2(["O", "I-PER"], "IOB2", invalid="error", where=lambda i: "row 7")
    with pytest.raises(DataError, match="'X-PER' is not O, B-TYPE"):
        to_iob2(["X-PER"], "IOB2")


def test_conll_files_are_read_split_repaired_and_errors_name_the_line(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "conll"
    folder.mkdir()
    rows = ner_rows(60, seed=5)
    rows[3]["ner_tags"] = ["I-" + t[2:] if t.startswith("B-") else t for t in rows[3]["ner_tags"]]  # invalid IOB2
    write_conll(folder / "train.conll", rows[:40], sep="\t")
    (folder / "dev.conll").write_text("-DOCSTART- -X- O\n\n" + "".join(
        "".join(f"{t} NN {g}\n" for t, g in zip(r["tokens"], r["ner_tags"])) + "\n" for r in rows[40:50]))
    write_conll(folder / "test.conll", rows[50:])
    task = nlpkit.get_task("ner")(load_config(
        nlpkit.get_task("ner").Config, None, {"data.source": str(folder), "model": str(tiny_model)}))
    data = task.load_data()
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 40, "validation": 10, "test": 10}
    assert data.splits["train"][0]["tokens"] == rows[0]["tokens"]
    assert data.notes["format"].startswith("CoNLL")
    repaired = data.notes["I- tags opening an entity, read as B- (data.invalid_tags=repair)"]
    assert repaired["train"] == sum(t.startswith("I-") and (i == 0 or rows[3]["ner_tags"][i - 1] == "O")
                                    for i, t in enumerate(rows[3]["ner_tags"]))
    # the same data refused: the error names the file and the line of the token
    cls = nlpkit.get_task("ner")
    cfg = load_config(cls.Config, None, {"data.source": str(folder), "model": str(tiny_model),
                                                       "data.invalid_tags": "error"})
    first_bad = next(i for i, t in enumerate(rows[3]["ner_tags"]) if t.startswith("I-")
                     and (i == 0 or rows[3]["ner_tags"][i - 1] == "O"))
    line = sum(len(r["tokens"]) + 1 for r in rows[:3]) + first_bad + 1
    with pytest.raises(DataError, match=rf"train\.conll line {line} \(train split, token "):
        cls(cfg).load_data()


def test_class_label_tags_and_length_mismatch(tmp_path: Path, tiny_model: Path) -> None:
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    rows = ner_rows(50, seed=7)
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    Dataset.from_dict({"tokens": [r["tokens"] for r in rows],
                       "ner_tags": [[names.index(t) for t in r["ner_tags"]] for r in rows]},
                      features=features).to_parquet(tmp_path / "tagged.parquet")
    cls = nlpkit.get_task("ner")
    cfg = load_config(cls.Config, None, {"data.source": str(tmp_path / "tagged.parquet"),
                                                       "model": str(tiny_model), "data.validation_size": 5,
                                                       "data.test_size": 5})
    data = cls(cfg).load_data()
    labels = data.info.labels
    assert labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    first = data.splits["train"][0]
    assert any(labels[t] != "O" for t in first["tags"])
    bad = ner_rows(30, seed=8)
    bad[4]["ner_tags"] = bad[4]["ner_tags"][:-1]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    cfg = load_config(cls.Config, None, {"data.source": str(tmp_path / "bad.jsonl"),
                                                       "model": str(tiny_model), "data.validation_size": 3,
                                                       "data.test_size": 3, "data.split_seed": 1})
    with pytest.raises(DataError, match=r"bad\.jsonl line 5 .*tokens but .* tags"):
        cls(cfg).load_data()


# ------------------------------------------------------------------------------------------- learning


def test_planted_entities_are_found_after_training(ner_run: dict) -> None:
    test = ner_run["test"]
    assert test["f1"] >= 0.9 and test["strict_f1"] >= 0.9, test
    assert set(test["per_type"]) == {"LOC", "PER"}
    pipe = nlpkit.pipeline(ner_run["run_dir"], device="cpu")
    found = pipe("we met carla mendez in new york today")
    assert [(s["type"], s["text"]) for s in found] == [("PER", "carla mendez"), ("LOC", "new york")]
    text = "we met carla mendez in new york today"
    assert all(text[s["start"]:s["end"]] == s["text"] for s in found)
    run = Path(ner_run["run_dir"])
    report = (run / "report.md").read_text()
    assert "Entities per type (test)" in report and (run / "per_type_f1.png").exists()
    assert (run / "type_confusion.png").exists()


def test_all_subwords_labelled_learns_too(tiny_model: Path, tmp_path: Path) -> None:
    report = nlpkit.train("ner", **ner_overrides(tiny_model, ner_data(tmp_path / "data"), tmp_path / "run",
                                                 **{"train.epochs": 4.0, "subword_labels": "all"}))
    assert report["test"]["f1"] >= 0.9


def test_an_untrained_head_finds_nothing_useful(tiny_model: Path, tmp_path: Path) -> None:
    """The learning test above can fail: the same model evaluated before any update scores near zero."""
    report = nlpkit.train("ner", **ner_overrides(tiny_model, ner_data(tmp_path / "data"), tmp_path / "run",
                                                 **{"train.max_steps": 1, "train.lr": 1e-9}))
    assert report["test"]["f1"] < 0.5


# ------------------------------------------------------------------------------------------- pipeline


def test_spans_equal_transformers_simple_aggregation(ner_run: dict) -> None:
    import transformers

    model_dir = str(Path(ner_run["run_dir"]) / "model")
    hf = transformers.pipeline("token-classification", model=model_dir, aggregation_strategy="simple", device=-1)
    ours = nlpkit.pipeline(ner_run["run_dir"], device="cpu")
    texts = [t for t in TEXTS if t.strip()]
    got = ours(texts, batch_size=4)
    for text, mine in zip(texts, got):
        theirs = hf(text)
        assert [(s["type"], s["start"], s["end"]) for s in mine] == \
            [(e["entity_group"], e["start"], e["end"]) for e in theirs], text
        for s, e in zip(mine, theirs):
            assert s["score"] == pytest.approx(float(e["score"]), abs=1e-4)
    assert ours("") == [] and ours(["", "anna"])[0] == []
    # on CPU the pipeline ran eager attention (faster on its length-sorted batches), transformers' SDPA
    assert ours.task.model.config._attn_implementation == "eager"
    assert hf.model.config._attn_implementation == "sdpa"


def test_a_chosen_attention_kernel_is_kept(ner_run: dict) -> None:
    ours = nlpkit.pipeline(ner_run["run_dir"], device="cpu", **{"model.attn_implementation": "sdpa"})
    ours(["anna lives in oslo"])
    assert ours.task.model.config._attn_implementation == "sdpa"


def test_grouping_rules() -> None:
    import numpy as np

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # tokens: [CLS] a b c d [SEP]: B-PER I-PER B-PER I-LOC -> PER(a b), PER(c), LOC(d)
    scores = np.full((6, 5), 0.01)
    for i, lab in enumerate([0, 1, 2, 1, 4, 0]):
        scores[i, lab] = 0.96
    text = "aa bb cc dd"
    offsets = [(0, 0), (0, 2), (3, 5), (6, 8), (9, 11), (0, 0)]
    spans = group_spans(text, scores, offsets, [1, 0, 0, 0, 0, 1], labels)
    assert [(s["type"], s["text"]) for s in spans] == [("PER", "aa bb"), ("PER", "cc"), ("LOC", "dd")]


def test_nlpkit_predict_writes_the_spans_of_each_row(ner_run: dict, tmp_path: Path) -> None:
    from nlpkit.predict_file import predict_file

    src = tmp_path / "in.csv"
    src.write_text("text\n" + "\n".join(f'"{t}"' for t in TEXTS) + "\n")
    pipe = nlpkit.pipeline(ner_run["run_dir"], device="cpu")
    predict_file(pipe, src, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    assert [json.loads(r["entities"]) for r in rows] == [json.loads(json.dumps(s)) for s in pipe(TEXTS)]


def test_serve_route_answers_what_the_pipeline_answers(ner_run: dict) -> None:
    from test_serve import serving

    with serving(ner_run["run_dir"]) as running, running.client() as c:
        r = c.post("/v1/entities", json={"inputs": TEXTS})
        assert r.status_code == 200, r.text
        want = running.pipe(TEXTS)
        got = r.json()["entities"]
        assert [[(s["type"], s["start"], s["end"], s["text"]) for s in row] for row in got] == \
            [[(s["type"], s["start"], s["end"], s["text"]) for s in row] for row in want]
        single = c.post("/v1/entities", json={"inputs": TEXTS[1]}).json()["entities"]
        assert [s["text"] for s in single] == [s["text"] for s in want[1]]
        assert c.post("/v1/entities", json={"inputs": TEXTS, "top_k": 1}).status_code == 422


def test_demo_highlights_the_entities(ner_run: dict) -> None:
    pytest.importorskip("gradio")
    from nlpkit.plugins.ner.demo import highlighted

    pipe = nlpkit.pipeline(ner_run["run_dir"], device="cpu")
    value, rows = highlighted(pipe, TEXTS[1])
    assert [value["text"][e["start"]:e["end"]] for e in value["entities"]] == ["carla mendez", "new york"]
    assert [r[1] for r in rows] == ["PER", "LOC"]
    assert pipe.task.build_demo(pipe) is not None


def test_int8_export_gives_nearly_every_row_the_same_spans(ner_run: dict, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from nlpkit.export import export_model

    entry = export_model(ner_run["run_dir"], tmp_path / "int8", quantize="int8")
    assert entry["kind"] == "token-classifier"
    exported = nlpkit.pipeline(str(tmp_path / "int8"))
    ours = nlpkit.pipeline(ner_run["run_dir"], device="cpu")
    # 60 new sentences with planted entities. The tiny model differs a little from build to build (tokenizers'
    # WordPiece trainer breaks ties in no fixed order, so the vocabulary changes: trained weight sums 164.05,
    # 166.14, 169.04 in three processes), and int8 may move a span whose score is a close call, so this asks what
    # a user checks: nearly every row's spans are the PyTorch model's (59 of 60 rows in runs measured by hand;
    # an export that lost the model would agree on few).
    rows = ner_rows(60, seed=7)
    texts = [" ".join(r["tokens"]) for r in rows]

    def spans(pipe: object) -> list[list[tuple[str, int, int]]]:
        return [[(s["type"], s["start"], s["end"]) for s in row] for row in pipe(texts)]

    int8, fp32 = spans(exported), spans(ours)
    assert sum(a == b for a, b in zip(int8, fp32)) >= 0.9 * len(texts)
    assert sum(len(r) for r in int8) >= len(texts)  # it finds entities: spans in (nearly) every row


def test_lora_run_saves_an_adapter_that_reloads(tiny_model: Path, tmp_path: Path) -> None:
    report = nlpkit.train("ner", **ner_overrides(tiny_model, ner_data(tmp_path / "data"), tmp_path / "run",
                                                 **{"train.max_steps": 6, "train.lora": True,
                                                    "lora.target_modules": ["query", "value"]}))
    model = Path(report["run_dir"]) / "model"
    assert (model / "adapter_config.json").exists() and not (model / "config.json").exists()
    again = nlpkit.evaluate(report["run_dir"])
    assert again["f1"] == pytest.approx(report["test"]["f1"], abs=1e-6)
    assert isinstance(nlpkit.pipeline(report["run_dir"], device="cpu")(TEXTS[1]), list)
