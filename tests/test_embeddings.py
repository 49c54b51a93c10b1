"""The embeddings task on tiny local models: it learns planted pairs, saves a sentence-transformers folder that
gives the same vectors, serves them as OpenAI's /v1/embeddings, exports to int8 ONNX and writes vectors with
``nlpkit predict``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from tiny_embeddings import embeddings_overrides, planted_data, planted_pairs, write_jsonl

import nlpkit
from nlpkit.errors import ConfigError, DataError, UsageError

TEXTS = ["the film great was quite", "boring", "a really long script and the acting " * 6, "the plot"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_data(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def trained(tiny_bert: Path, planted: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two epochs of MultipleNegativesRanking with hard negatives on the planted pairs (30 updates)."""
    out = tmp_path_factory.mktemp("emb") / "run"
    return nlpkit.train("embeddings", **embeddings_overrides(tiny_bert, planted, out, **{"train.epochs": 2.0}))


def _recall_at_1(pipe, rows: list[dict]) -> float:
    passages = [r["positive"] for r in rows]
    hits = pipe([r["anchor"] for r in rows], corpus=passages, top_k=1)
    return float(np.mean([h[0]["text"] == r["positive"] for h, r in zip(hits, rows)]))


def test_planted_pairs_are_retrieved_first_after_training_and_not_before(trained: dict, tiny_bert: Path,
                                                                         planted: Path) -> None:
    test = [json.loads(line) for line in (planted / "test.jsonl").read_text().splitlines()]
    # every query competes with 7 passages that differ from its own only in the planted word
    before = _recall_at_1(nlpkit.pipeline("embeddings", model=str(tiny_bert), device="cpu"), test)
    after = _recall_at_1(nlpkit.pipeline(trained["run_dir"], device="cpu"), test)
    assert before < 0.5, before
    assert after >= 0.9, after
    metrics = trained["test"]
    assert metrics["recall_at_1"] >= 0.9 and metrics["mrr_at_10"] >= 0.9, metrics
    assert metrics["corpus_size"] == 40  # the hard negatives are other pairs' positives: merged
    assert trained["main_metric"] == "mrr_at_10"


def test_the_run_is_a_sentence_transformers_folder_with_the_same_vectors(trained: dict) -> None:
    st = pytest.importorskip("sentence_transformers")
    folder = Path(trained["run_dir"]) / "model"
    assert json.loads((folder / "modules.json").read_text())[1]["path"] == "1_Pooling"
    ours = np.asarray(nlpkit.pipeline(trained["run_dir"], device="cpu")(TEXTS))
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    cos = (ours * theirs).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(theirs, axis=-1))
    assert cos.min() >= 0.9999, cos
    assert np.allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-5)  # normalised, as the modules say


def test_cls_pooling_without_normalisation_round_trips(tiny_bert: Path, planted: Path, tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    report = nlpkit.train("embeddings", **embeddings_overrides(
        tiny_bert, planted, tmp_path / "run", pooling="cls", normalize=False, **{"train.max_steps": 3}))
    folder = Path(report["run_dir"]) / "model"
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] and not pooling["pooling_mode_mean_tokens"]
    assert not (folder / "2_Normalize").exists()
    ours = np.asarray(nlpkit.pipeline(report["run_dir"], device="cpu")(TEXTS))
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert np.allclose(ours, theirs, atol=1e-5)


def test_search_and_blank_inputs(trained: dict) -> None:
    pipe = nlpkit.pipeline(trained["run_dir"], device="cpu")
    vectors = pipe(["a text", "", "another"])
    assert vectors[1] is None and len(vectors[0]) == 32
    hits = pipe("the film great", corpus=["the film awful", "the film boring", "the film great"], top_k=2)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    assert hits[0] == {"index": 2, "score": hits[0]["score"], "text": "the film great"}  # itself, cosine 1
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(UsageError, match="corpus"):
        pipe("query", corpus="not a list")
    with pytest.raises(UsageError, match="Unknown option"):
        pipe("query", topk=3)


def test_scored_pairs_train_with_cosent_and_report_spearman(tiny_bert: Path, tmp_path: Path) -> None:
    """Pairs scored 1 (partners) or 0 (another pair's word): CoSENT learns to rank them, Spearman says so."""
    def scored(rows: list[dict]) -> list[dict]:
        out = []
        for r in rows:
            out.append({"anchor": r["anchor"], "positive": r["positive"], "score": 5.0})
            out.append({"anchor": r["anchor"], "positive": r["negative"], "score": 0.0})
        return out

    data = tmp_path / "scored"
    data.mkdir()
    write_jsonl(data / "train.jsonl", scored(planted_pairs(30, seed=1)))
    write_jsonl(data / "validation.jsonl", scored(planted_pairs(3, seed=2)))
    write_jsonl(data / "test.jsonl", scored(planted_pairs(4, seed=3)))
    report = nlpkit.train("embeddings", **embeddings_overrides(tiny_bert, data, tmp_path / "run",
                                                               **{"train.epochs": 3.0}))
    assert report["test"]["spearman"] >= 0.7, report["test"]
    descriptor = json.loads((Path(report["run_dir"]) / "model" / "nlpkit_task.json").read_text())
    assert descriptor["info"]["loss"] == "cosent" and descriptor["info"]["score_max"] == 5.0


def test_bad_options_and_rows_name_the_fix(tiny_bert: Path, planted: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loss=cosent needs a score"):
        nlpkit.train("embeddings", **embeddings_overrides(tiny_bert, planted, tmp_path / "a", loss="cosent"))
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = [{"anchor": "a b", "positive": "c d", "score": 1.0}] * 40
    write_jsonl(bad / "train.jsonl", rows[:20] + [{"anchor": "a", "positive": "b", "score": "high"}] + rows[20:])
    write_jsonl(bad / "validation.jsonl", rows[:20])
    write_jsonl(bad / "test.jsonl", rows[:20])
    with pytest.raises(DataError, match=r"train.jsonl line 21 \(train split\): score='high' is not a number"):
        nlpkit.train("embeddings", **embeddings_overrides(tiny_bert, bad, tmp_path / "b"))


def test_serve_route_answers_what_the_pipeline_answers(trained: dict) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_serve import serving

    with serving(trained["run_dir"]) as running, running.client() as c:
        got = c.post("/v1/embeddings", json={"input": TEXTS, "model": "tiny"})
        assert got.status_code == 200, got.text
        body = got.json()
        want = running.pipe(TEXTS)
        assert [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
        assert np.allclose([d["embedding"] for d in body["data"]], want, atol=1e-5)
        assert body["usage"]["prompt_tokens"] > len(TEXTS)
        import base64

        b64 = c.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
        decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
        assert np.allclose(decoded, want[0], atol=1e-5)
        blank = c.post("/v1/embeddings", json={"input": ["fine", " "]})
        assert blank.status_code == 422 and "input[1]" in blank.text
        wrong = c.post("/v1/embeddings", json={"input": "x", "dimensions": 7})
        assert wrong.status_code == 422 and "32" in wrong.text


def test_int8_export_keeps_the_vectors_and_the_retrieval(trained: dict, planted: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from nlpkit.export import export_model

    out = tmp_path / "int8"
    export_model(trained["run_dir"], out, quantize="int8")
    onnx = nlpkit.pipeline(str(out), device="cpu")
    assert getattr(onnx.model, "runs_on_onnx", False)
    torch_vectors = np.asarray(nlpkit.pipeline(trained["run_dir"], device="cpu")(TEXTS))
    int8_vectors = np.asarray(onnx(TEXTS))
    cos = (torch_vectors * int8_vectors).sum(-1) / (np.linalg.norm(torch_vectors, axis=-1)
                                                    * np.linalg.norm(int8_vectors, axis=-1))
    assert cos.min() >= 0.99, cos
    again = nlpkit.evaluate(str(out), data=str(planted))
    assert abs(again["mrr_at_10"] - trained["test"]["mrr_at_10"]) <= 0.005, again


def test_int8_export_runs_short_texts_on_its_fp32_graph_and_long_ones_in_int8(trained: dict,
                                                                             tmp_path: Path) -> None:
    """The length rule: in one padded batch, the rows of at most FP32_MAX_TOKENS tokens get the fp32 export's
    token vectors and the longer rows the int8 graph's; the feed-forward output projections stay fp32."""
    pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from nlpkit.export import export_model
    from nlpkit.inference import pad
    from nlpkit.plugins.embeddings.export import FP32_MAX_TOKENS, KEEP_FP32

    export_model(trained["run_dir"], tmp_path / "int8", quantize="int8")
    export_model(trained["run_dir"], tmp_path / "fp32")
    int8, fp32 = (nlpkit.pipeline(str(tmp_path / name), device="cpu") for name in ("int8", "fp32"))
    entry = json.loads((tmp_path / "int8" / "nlpkit_task.json").read_text())["onnx"]
    assert entry["fallback"]["margin"] == FP32_MAX_TOKENS == int8.model.max_fp32_tokens
    assert fp32.model.fallback is None and fp32.model.max_fp32_tokens == 0
    nodes = onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node
    ops = [n.op_type for n in nodes]
    kept = [n.name for n in nodes if n.op_type == "MatMul" and re.search(KEEP_FP32, n.name)]
    assert entry["quantization"]["kept_fp32"] == KEEP_FP32  # the spec's, kept with the fallback too
    assert len(kept) == entry["quantization"]["nodes_kept_fp32"] == 2, kept  # one per layer, left fp32
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops

    texts = ["boring", "the plot", "the film great was quite", "a really long script and the acting " * 3]
    ids = [int8.task.tokenizer(t)["input_ids"] for t in texts]
    short = np.array([len(x) <= FP32_MAX_TOKENS for x in ids])
    assert short.any() and not short.all(), [len(x) for x in ids]
    input_ids, mask = pad(ids, int8.task.tokenizer.pad_token_id or 0)
    with torch.inference_mode():
        routed = int8.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.numpy()
        all_int8 = int8.model(input_ids=input_ids, attention_mask=mask, fallback=False).last_hidden_state.numpy()
        long_int8 = int8.model(input_ids=input_ids[~short], attention_mask=mask[~short],
                               fallback=False).last_hidden_state.numpy()  # the long rows alone, as routed
        want = fp32.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.numpy()
    real = mask.numpy().astype(bool)
    for i in np.flatnonzero(short):
        assert np.allclose(routed[i][real[i]], want[i][real[i]], atol=1e-5), i  # the fp32 graph's vectors
        assert not np.allclose(all_int8[i][real[i]], want[i][real[i]], atol=1e-5), i  # which int8 would not give
    for i, j in zip(np.flatnonzero(~short), range((~short).sum())):
        assert np.array_equal(routed[i][real[i]], long_int8[j][real[i]]), i  # the int8 graph's
        assert not np.allclose(routed[i][real[i]], want[i][real[i]], atol=1e-5), i
    # through the pipeline (length-sorted batches): short texts exactly as the fp32 export embeds them
    assert np.allclose(np.asarray(int8(texts))[short], np.asarray(fp32(texts))[short], atol=1e-6)
    with pytest.raises(UsageError, match="length rule"):
        export_model(trained["run_dir"], tmp_path / "margin", quantize="int8", fallback_margin=0.2)


def test_predict_writes_vectors_to_parquet(trained: dict, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nlpkit.predict_file import predict_file

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "out.parquet"
    pipe = nlpkit.pipeline(trained["run_dir"], device="cpu")
    predict_file(pipe, source, out)
    table = pq.read_table(out)
    kind = table.schema.field("embedding").type
    assert pa.types.is_list(kind) and pa.types.is_float32(kind.value_type), kind
    assert np.allclose(table.column("embedding").to_pylist(), pipe(TEXTS), atol=1e-6)


def _benchmark(name: str):
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module(name)


def test_embeddings_baselines(trained: dict, tiny_bert: Path, tmp_path: Path) -> None:
    """benchmarks/embeddings_baselines.py on the tiny run: BM25 cannot tell the planted words' partners apart
    (they share no letters), the fine-tuned encoder can, and so does its int8 export, on the same split."""
    pytest.importorskip("rank_bm25")
    pytest.importorskip("onnxruntime")
    from nlpkit.export import export_model

    export_model(trained["run_dir"], tmp_path / "int8", quantize="int8")
    out = _benchmark("embeddings_baselines").main([trained["run_dir"], "--pretrained", str(tiny_bert),
                                                   "--batch-size", "8", "--export", str(tmp_path / "int8"),
                                                   "--json", str(tmp_path / "b.json")])
    systems = out["systems"]
    tuned = systems["fine-tuned (this run)"]
    assert tuned["recall_at_1"] >= 0.9 > systems["BM25 (rank-bm25 Okapi)"]["recall_at_1"]
    assert tuned["recall_at_1"] > systems[f"pretrained {tiny_bert}"]["recall_at_1"]
    assert tuned["mrr_at_10"] == pytest.approx(trained["test"]["mrr_at_10"], abs=1e-6)
    assert abs(systems["fine-tuned, ONNX int8 (int8)"]["mrr_at_10"] - tuned["mrr_at_10"]) <= 0.005
    assert json.loads((tmp_path / "b.json").read_text())["data"]["queries"] == 40


def test_embeddings_infer(trained: dict, tmp_path: Path) -> None:
    """benchmarks/embeddings_infer.py on the tiny run: every side encodes the same texts; the PyTorch pipeline and
    the fp32 export give sentence-transformers' vectors, the int8 export and both bf16 sides stay within cosine 0.99
    of them."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("onnxruntime")
    out = _benchmark("embeddings_infer").main([trained["run_dir"], "--texts", "60", "--rounds", "2",
                                               "--batch-size", "8", "--threads", "1", "--bf16",
                                               "--json", str(tmp_path / "i.json")])
    sides = out["sides"]
    assert set(sides) == {"SentenceTransformer.encode", "nlpkit.pipeline (PyTorch)", "nlpkit.pipeline (ONNX fp32)",
                          "nlpkit.pipeline (ONNX int8)", "SentenceTransformer.encode (bf16)",
                          "nlpkit.pipeline (PyTorch bf16)"}, out["refused"]
    # bfloat16 weights move the vectors a little, both libraries alike (cosines are to the fp32 reference)
    assert 0.99 <= sides["nlpkit.pipeline (PyTorch bf16)"]["min_cosine"] < 1 - 1e-9
    assert sides["SentenceTransformer.encode (bf16)"]["min_cosine"] >= 0.99
    assert sides["nlpkit.pipeline (PyTorch)"]["min_cosine"] >= 0.9999
    assert sides["nlpkit.pipeline (ONNX fp32)"]["min_cosine"] >= 0.9999
    assert sides["nlpkit.pipeline (ONNX int8)"]["min_cosine"] >= 0.99
    assert all(len(m["round_ratios"]) == 2 for m in sides.values())
    assert json.loads((tmp_path / "i.json").read_text())["texts"] == 60


def test_lora_preset_trains_adapters_and_saves_a_merged_sentence_transformers_folder(tiny_bert: Path, planted: Path,
                                                                                     tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    report = nlpkit.train("embeddings", "lora", **embeddings_overrides(
        tiny_bert, planted, tmp_path / "run", **{"train.max_steps": 4, "lora.target_modules": ["query", "value"]}))
    assert "(LoRA)" in str(report["data_notes"]["trainable parameters"])
    folder = Path(report["run_dir"]) / "model"
    assert not (folder / "adapter_config.json").exists()  # lora.merge: a plain model
    ours = np.asarray(nlpkit.pipeline(report["run_dir"], device="cpu")(TEXTS))
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert np.allclose(ours, theirs, atol=1e-5)
