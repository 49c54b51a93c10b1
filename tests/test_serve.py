"""``nlpkit serve``: the real server (uvicorn on 127.0.0.1, a free port) called over HTTP with httpx and the
official ``openai`` client. Each route answers what ``nlpkit.pipeline`` answers; concurrent requests are merged
into one model call; the limits answer 429/413/422/401/504 naming the field and the limit; a bad request fails
alone; SIGTERM answers the requests in flight, then exits 0; an export is served like its run.

Loopback only; every call has a timeout. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from conftest import sentiment_overrides  # noqa: E402
from tiny_generation import generation_overrides, play_corpus, tiny_llama  # noqa: E402
from tiny_translation import pairs, translation_overrides, write_folder  # noqa: E402
from tiny_word2vec import planted_texts, w2v_overrides, write_corpus_file  # noqa: E402

import nlpkit  # noqa: E402
from nlpkit.serve.app import build_app  # noqa: E402
from nlpkit.serve.draining import DrainingServer  # noqa: E402
from nlpkit.serve.settings import ServeSettings  # noqa: E402

#: Seconds any one HTTP call may take (tiny models answer in milliseconds; CI machines are busy).
CALL_TIMEOUT = 60
#: Seconds the server may take to start, warm up or stop.
START_TIMEOUT = 120


# --------------------------------------------------------------------------------------------- helpers


class Running:
    """A server in a background thread of this process: its base URL, its app and the pipeline it serves."""

    def __init__(self, server, thread: threading.Thread, app, pipe):
        self.server, self.thread, self.app, self.pipe = server, thread, app, pipe
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CALL_TIMEOUT, headers=headers)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        with self.client(**self.auth()) as c:
            text = c.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    def auth(self) -> dict[str, str]:
        key = self.app.state.server.settings.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def hold_model(self) -> threading.Event:
        """Keep the model thread busy until the returned event is set (requests queue behind it)."""
        release, held = threading.Event(), threading.Event()

        def hold() -> None:
            held.set()
            release.wait(START_TIMEOUT)

        server = self.app.state.server
        loop = self.server_loop
        asyncio.run_coroutine_threadsafe(server.batcher.run(hold), loop)
        assert held.wait(START_TIMEOUT)
        return release


@contextmanager
def serving(run: Path | str, pipe=None, wait_ready: bool = True, **settings) -> Iterator[Running]:
    """``nlpkit serve``'s app for ``run`` on a free loopback port while the block runs; waits for /ready."""
    import uvicorn

    pipe = pipe or nlpkit.pipeline(str(run))
    options = ServeSettings(**{"max_wait_ms": 5.0, **settings})
    app = build_app(pipe, options, model_name="tiny")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = DrainingServer(config)  # what `nlpkit serve` runs
    loops: list = []

    def run_server() -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    running = Running(server, thread, app, pipe)
    running.server_loop = loops[0]
    with running.client(**running.auth()) as c:
        while wait_ready and c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)


async def concurrently(url: str, requests: list[tuple[str, dict]], headers: dict | None = None) -> list:
    """POST every (path, json) at once; the responses in order."""
    async with httpx.AsyncClient(base_url=url, timeout=CALL_TIMEOUT, headers=headers or {}) as c:
        return await asyncio.gather(*[c.post(path, json=body) for path, body in requests])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve-sentiment") / "run"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out,
                                                             **{"train.max_steps": 12}))
    return Path(report["run_dir"])


@pytest.fixture(scope="module")
def sentiment_server(sentiment_run: Path) -> Iterator[Running]:
    with serving(sentiment_run, max_wait_ms=50) as running:
        yield running


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve-generation")
    model = tiny_llama(tmp_path_factory)
    report = nlpkit.train("generation", **generation_overrides(model, play_corpus(folder / "data"), folder / "run",
                                                               **{"train.max_steps": 4}))
    return Path(report["run_dir"])


@pytest.fixture(scope="module")
def word2vec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve-word2vec")
    corpus = write_corpus_file(folder / "corpus.txt", planted_texts(300))
    report = nlpkit.train("word2vec", **w2v_overrides(corpus, folder / "run", **{"w2v.epochs": 10}))
    return Path(report["run_dir"])


TEXTS = ["a great and moving film", "boring", "", "the plot was dull at times " * 20, "superb acting, fresh script"]


# --------------------------------------------------------------------------------------------- sentiment


def test_classify_answers_what_the_pipeline_answers(sentiment_server: Running) -> None:
    pipe = sentiment_server.pipe
    with sentiment_server.client() as c:
        r = c.post("/v1/classify", json={"inputs": TEXTS})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["model"] == "tiny"
        want = pipe(TEXTS)
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want]
        for g, w in zip(got["predictions"], want):
            assert g["score"] == pytest.approx(w["score"], abs=1e-5) if w["score"] is not None else g["score"] is None
        # one text -> one prediction; top_k -> a ranked list; top_k null -> every label
        single = c.post("/v1/classify", json={"inputs": TEXTS[0]}).json()["predictions"]
        assert single["label"] == pipe(TEXTS[0])["label"]
        ranked = c.post("/v1/classify", json={"inputs": TEXTS[0], "top_k": 1}).json()["predictions"]
        assert [p["label"] for p in ranked] == [p["label"] for p in pipe(TEXTS[0], top_k=1)]
        every = c.post("/v1/classify", json={"inputs": [TEXTS[1]], "top_k": None}).json()["predictions"][0]
        assert sorted(p["label"] for p in every) == sorted(pipe.task.labels)
        assert every[0]["score"] == pytest.approx(pipe(TEXTS[1], top_k=None)[0]["score"], abs=1e-5)


def test_classify_gives_a_multi_label_models_labels_over_their_thresholds(sentiment_run: Path) -> None:
    pipe = nlpkit.pipeline(str(sentiment_run))
    pipe.task.info.problem_type = "multi_label"  # the same head read as multi-label, with tuned-like thresholds
    pipe.task.set_thresholds([0.3, 0.45])
    want = pipe(TEXTS)
    assert any(len(w) == 2 for w in want) or any(len(w) == 1 for w in want)  # thresholds really pick labels
    with serving(sentiment_run, pipe=pipe) as running, running.client() as c:
        got = c.post("/v1/classify", json={"inputs": TEXTS}).json()["predictions"]
        assert [[p["label"] for p in g] for g in got] == [[p["label"] for p in w] for w in want]
        assert got[2] == []  # a blank text: no label


def test_a_failing_request_answers_500_alone_and_the_server_goes_on(sentiment_run: Path) -> None:
    """A bug hit by one input (here a predict that raises on it): that request gets a 500 naming its request id,
    the requests merged with it get their answers, and the server keeps serving."""
    pipe = nlpkit.pipeline(str(sentiment_run))
    predict = pipe.task.predict

    def fragile(inputs, *args, **kwargs):
        if "boom" in inputs:
            raise RuntimeError("a bug")
        return predict(inputs, *args, **kwargs)

    pipe.task.predict = fragile
    with serving(sentiment_run, pipe=pipe, max_wait_ms=100) as running:
        responses = asyncio.run(concurrently(running.url, [("/v1/classify", {"inputs": t})
                                                           for t in ["great", "boom", "dull", "moving"]]))
        assert [r.status_code for r in responses] == [200, 500, 200, 200]
        failed = responses[1].json()
        assert failed["request_id"] in failed["error"]["message"] and "a bug" not in failed["error"]["message"]
        with running.client() as c:
            assert c.post("/v1/classify", json={"inputs": "great"}).status_code == 200


def test_every_response_carries_a_request_id(sentiment_server: Running) -> None:
    with sentiment_server.client() as c:
        given = c.post("/v1/classify", json={"inputs": "x"}, headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = c.post("/v1/classify", json={"inputs": 5})
        assert made.status_code == 422 and len(made.headers["x-request-id"]) >= 16
        assert made.json()["request_id"] == made.headers["x-request-id"]
        # an id that could forge a log line is replaced
        forged = c.get("/health", headers={"X-Request-ID": "a b\tc"})
        assert forged.headers["x-request-id"] != "a b\tc"


def test_concurrent_requests_are_merged_into_one_model_call(sentiment_server: Running) -> None:
    """16 requests at once, each one text: the batch histogram shows a call of more than one request, and every
    request gets its own text's answer."""
    texts = [f"{w} film {i}" for i, w in enumerate(["great", "dull", "moving", "bland"] * 4)]
    before = sentiment_server.metric("nlpkit_batch_requests_count")
    singles_before = sentiment_server.metric("nlpkit_batch_requests_bucket", le="1.0")
    responses = asyncio.run(concurrently(sentiment_server.url, [("/v1/classify", {"inputs": t}) for t in texts]))
    assert all(r.status_code == 200 for r in responses)
    want = sentiment_server.pipe(texts)
    for r, w in zip(responses, want):
        got = r.json()["predictions"]
        assert got["label"] == w["label"] and got["score"] == pytest.approx(w["score"], abs=1e-5)
    calls = sentiment_server.metric("nlpkit_batch_requests_count") - before
    singles = sentiment_server.metric("nlpkit_batch_requests_bucket", le="1.0") - singles_before
    assert calls < len(texts), "every request ran in a model call of its own"
    assert singles < calls, "no model call merged two requests"


def test_unknown_fields_wrong_types_and_malformed_json_name_the_field(sentiment_server: Running) -> None:
    with sentiment_server.client() as c:
        unknown = c.post("/v1/classify", json={"inputs": "x", "topk": 2})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["param"] == "topk" and "topk" in unknown.json()["error"]["message"]
        wrong = c.post("/v1/classify", json={"inputs": [1, 2]})
        assert wrong.status_code == 422 and wrong.json()["error"]["param"].startswith("inputs")
        negative = c.post("/v1/classify", json={"inputs": "x", "top_k": -1})
        assert negative.status_code == 422 and negative.json()["error"]["param"] == "top_k"
        missing = c.post("/v1/classify", json={})
        assert missing.status_code == 422 and missing.json()["error"]["param"] == "inputs"
        bad = c.post("/v1/classify", content=b'{"inputs": ', headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
        # the server is still there
        assert c.post("/v1/classify", json={"inputs": "x"}).status_code == 200


def test_size_limits_answer_413_naming_the_field_and_the_limit(sentiment_run: Path) -> None:
    with serving(sentiment_run, max_inputs=3, max_chars=50, max_body_bytes=2000) as running, running.client() as c:
        many = c.post("/v1/classify", json={"inputs": ["a", "b", "c", "d"]})
        assert many.status_code == 413
        err = many.json()["error"]
        assert err["param"] == "inputs" and "--max-inputs" in err["message"] and "3" in err["message"]
        long = c.post("/v1/classify", json={"inputs": ["x" * 30, "y" * 30]})
        assert long.status_code == 413 and "--max-chars" in long.json()["error"]["message"]
        body = c.post("/v1/classify", content=json.dumps({"inputs": "z" * 5000}),
                      headers={"content-type": "application/json"})
        assert body.status_code == 413 and "--max-body-bytes" in body.json()["error"]["message"]
        assert c.post("/v1/classify", json={"inputs": ["ok", "fine"]}).status_code == 200


def test_api_key_guards_every_route_but_health(sentiment_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLPKIT_API_KEY", "s3cret")  # the environment variable, as a deployment would set it
    with serving(sentiment_run) as running:
        with running.client() as anonymous:
            assert anonymous.get("/health").status_code == 200
            for method, path in (("GET", "/ready"), ("GET", "/metrics"), ("GET", "/v1/models"),
                                 ("POST", "/v1/classify"), ("GET", "/docs")):
                r = anonymous.request(method, path, json={"inputs": "x"} if method == "POST" else None)
                assert r.status_code == 401, path
                assert r.headers["www-authenticate"] == "Bearer" and "Authorization" in r.json()["error"]["message"]
        with running.client(Authorization="Bearer wrong") as wrong:
            assert wrong.post("/v1/classify", json={"inputs": "x"}).status_code == 401
        with running.client(Authorization="Bearer s3cret") as right:
            assert right.post("/v1/classify", json={"inputs": "x"}).status_code == 200
            assert right.get("/v1/models").json()["data"][0]["id"] == "tiny"


def test_over_max_concurrency_answers_429_with_retry_after(sentiment_run: Path) -> None:
    """One request in flight (held behind a busy model) fills --max-concurrency 1: the next one is refused at
    once with 429 and Retry-After, not queued; /health and /metrics still answer; the held one then succeeds."""
    with serving(sentiment_run, max_concurrency=1) as running:
        release = running.hold_model()
        results: list = []
        first = threading.Thread(target=lambda: results.append(
            httpx.post(running.url + "/v1/classify", json={"inputs": "great"}, timeout=CALL_TIMEOUT)))
        first.start()
        with running.client() as c:
            deadline = time.monotonic() + START_TIMEOUT
            while running.metric("nlpkit_requests_in_flight") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            refused = c.post("/v1/classify", json={"inputs": "dull"})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert "--max-concurrency" in refused.json()["error"]["message"]
            assert c.get("/health").status_code == 200
            release.set()
            first.join(CALL_TIMEOUT)
            assert results[0].status_code == 200
            assert running.metric("nlpkit_rejected_requests_total", reason="busy") == 1
            assert c.post("/v1/classify", json={"inputs": "dull"}).status_code == 200


def test_a_request_past_the_timeout_answers_504_and_the_server_goes_on(sentiment_run: Path) -> None:
    with serving(sentiment_run, timeout=0.5) as running, running.client() as c:
        release = running.hold_model()
        late = c.post("/v1/classify", json={"inputs": "great"})
        release.set()
        assert late.status_code == 504 and "--timeout" in late.json()["error"]["message"]
        assert c.post("/v1/classify", json={"inputs": "great"}).status_code == 200


def test_ready_says_503_until_the_warm_up_prediction_has_run(sentiment_run: Path) -> None:
    pipe = nlpkit.pipeline(str(sentiment_run))
    predict, release, warming = pipe.task.predict, threading.Event(), threading.Event()

    def slow_first(inputs, *args, **kwargs):
        warming.set()
        release.wait(START_TIMEOUT)
        return predict(inputs, *args, **kwargs)

    pipe.task.predict = slow_first
    with serving(sentiment_run, pipe=pipe, wait_ready=False) as running, running.client() as c:
        assert warming.wait(START_TIMEOUT)
        not_yet = c.get("/ready")
        assert not_yet.status_code == 503 and not_yet.json() == {"ready": False, "task": "sentiment",
                                                                 "model": "tiny", "reason": "warming up"}
        assert c.get("/health").status_code == 200
        release.set()
        deadline = time.monotonic() + START_TIMEOUT
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_health_ready_metrics_models_and_docs(sentiment_server: Running) -> None:
    with sentiment_server.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready").json()
        assert ready["ready"] is True and ready["task"] == "sentiment"
        c.post("/v1/classify", json={"inputs": "great"})
        text = c.get("/metrics").text
        for name in ("nlpkit_requests_total", "nlpkit_request_duration_seconds_bucket", "nlpkit_batch_size_bucket",
                     "nlpkit_queue_depth", "nlpkit_tokens_total"):
            assert name in text, name
        assert 'route="/v1/classify",status="200"' in text
        assert sentiment_server.metric("nlpkit_tokens_total", kind="input") > 0
        assert c.get("/v1/models").json()["data"][0]["id"] == "tiny"
        assert c.get("/docs").status_code == 200
        assert "/v1/classify" in c.get("/openapi.json").json()["paths"]


def test_an_int8_export_is_served_with_the_answers_its_pipeline_gives(sentiment_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from nlpkit import export

    out = tmp_path / "int8"
    export.export_model(str(sentiment_run), out, quantize="int8")  # the fast CPU path, fp32 fallback included
    with serving(out) as running, running.client() as c:
        assert type(running.pipe.model).__name__ == "OnnxModel"
        got = c.post("/v1/classify", json={"inputs": TEXTS})
        assert got.status_code == 200, got.text
        want = nlpkit.pipeline(str(out))(TEXTS)
        assert [p["label"] for p in got.json()["predictions"]] == [p["label"] for p in want]
        for g, w in zip(got.json()["predictions"], want):
            assert g["score"] == pytest.approx(w["score"], abs=1e-6) if w["score"] is not None else g["score"] is None


def test_dtype_loads_the_served_weights_in_that_precision(sentiment_run: Path, tmp_path: Path) -> None:
    import torch

    from nlpkit.errors import ConfigError, UsageError
    from nlpkit.serve.app import load_pipeline

    pipe = load_pipeline(str(sentiment_run), ServeSettings(dtype="bfloat16"))
    assert next(pipe.task.model.parameters()).dtype == torch.bfloat16
    with serving(sentiment_run, pipe=pipe) as running, running.client() as c:
        got = c.post("/v1/classify", json={"inputs": TEXTS})
        assert got.status_code == 200, got.text
        want = nlpkit.pipeline(str(sentiment_run), dtype="bfloat16")(TEXTS)
        assert [p["label"] for p in got.json()["predictions"]] == [p["label"] for p in want]
    with pytest.raises(ConfigError, match="--dtype 'int4'"):
        ServeSettings(dtype="int4")
    pytest.importorskip("onnxruntime")
    from nlpkit import export

    out = tmp_path / "fp32"
    export.export_model(str(sentiment_run), out)
    with pytest.raises(UsageError, match="ONNX export"):  # an export's precision was fixed when it was exported
        load_pipeline(str(out), ServeSettings(dtype="bfloat16"))


def test_cors_is_off_unless_an_origin_is_given(sentiment_run: Path) -> None:
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    with serving(sentiment_run) as running, running.client() as c:
        r = c.options("/v1/classify", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with serving(sentiment_run, cors_origins=["https://app.example.com"]) as running, running.client() as c:
        r = c.options("/v1/classify", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = c.post("/v1/classify", json={"inputs": "x"}, headers={"Origin": "https://app.example.com"})
        assert r.headers["access-control-allow-origin"] == "https://app.example.com" and "x-request-id" in r.headers


# --------------------------------------------------------------------------------------------- other tasks


def test_translate_answers_what_the_pipeline_answers(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", pairs(64, 1), pairs(12, 2), pairs(13, 3))
    run = Path(nlpkit.train("translation", **translation_overrides(data, tmp_path / "run",
                                                                   **{"train.max_steps": 6}))["run_dir"])
    sources = ["the red cat sleeps", "the old king eats and the small dog runs", "", "the happy bird sings"]
    with serving(run) as running, running.client() as c:
        pipe = running.pipe
        got = c.post("/v1/translate", json={"inputs": sources})
        assert got.status_code == 200, got.text
        assert got.json()["translations"] == pipe(sources)
        options = {"num_beams": 2, "max_new_tokens": 6}
        assert c.post("/v1/translate", json={"inputs": sources[0], **options}).json()["translations"] == \
            pipe(sources[0], **options)
        # the decoding options are the run's generate config's fields; others are refused by name
        schema = c.get("/openapi.json").json()["components"]["schemas"]["TranslateRequest"]["properties"]
        assert {"num_beams", "max_new_tokens", "do_sample", "no_repeat_ngram_size"} <= set(schema)
        refused = c.post("/v1/translate", json={"inputs": "x", "beams": 2})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "beams"
        invalid = c.post("/v1/translate", json={"inputs": "x", "num_beams": 0})
        assert invalid.status_code == 422 and "num_beams" in invalid.json()["error"]["message"]
        # concurrent requests with the same options share calls and still get their own translations
        responses = asyncio.run(concurrently(running.url, [("/v1/translate", {"inputs": s}) for s in sources * 3]))
        assert [r.json()["translations"] for r in responses] == pipe(sources * 3)


def test_word2vec_routes_answer_what_the_pipeline_answers(word2vec_run: Path) -> None:
    with serving(word2vec_run) as running, running.client() as c:
        pipe = running.pipe
        got = c.post("/v1/neighbors", json={"inputs": ["cat", "apple"], "topn": 5}).json()["neighbors"]
        assert [[n["word"] for n in x] for x in got] == [[n["word"] for n in x]
                                                         for x in pipe(["cat", "apple"], topn=5)]
        sims = c.post("/v1/similarity", json={"pairs": [["cat", "dog"], ["cat", "apple"]]}).json()["similarities"]
        assert sims == pytest.approx(pipe([("cat", "dog"), ("cat", "apple")], mode="similarity"), abs=1e-6)
        answers = c.post("/v1/analogy", json={"queries": [["cat", "dog", "apple"]], "topn": 3}).json()["answers"]
        assert [a["word"] for a in answers[0]] == [a["word"] for a in pipe([("cat", "dog", "apple")],
                                                                            mode="analogy", topn=3)[0]]
        emb = c.post("/v1/embeddings", json={"input": ["cat dog", "red car"], "model": "tiny"}).json()
        assert emb["object"] == "list" and [d["index"] for d in emb["data"]] == [0, 1]
        for d, want in zip(emb["data"], pipe(["cat dog", "red car"], mode="text")):
            assert d["object"] == "embedding" and d["embedding"] == pytest.approx(want, abs=1e-6)
        assert emb["usage"]["prompt_tokens"] == 4
        # unknown words: 422 naming the word; in a merged batch only that request fails
        unknown = c.post("/v1/neighbors", json={"inputs": "zebra"})
        assert unknown.status_code == 422 and "zebra" in unknown.json()["error"]["message"]
        nothing = c.post("/v1/embeddings", json={"input": ["cat", "zzz qqq"]})
        assert nothing.status_code == 422 and nothing.json()["error"]["param"] == "input[1]"
        mixed = asyncio.run(concurrently(running.url, [("/v1/neighbors", {"inputs": w})
                                                       for w in ["cat", "zebra", "dog", "apple"]]))
        assert [r.status_code for r in mixed] == [200, 422, 200, 200]


def test_openai_client_embeddings(word2vec_run: Path) -> None:
    openai = pytest.importorskip("openai")
    with serving(word2vec_run) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=CALL_TIMEOUT, max_retries=0)
        got = client.embeddings.create(model="tiny", input=["cat dog", "red car"])  # asks for base64
        want = running.pipe(["cat dog", "red car"], mode="text")
        assert [d.embedding for d in got.data] == [pytest.approx(w, abs=1e-6) for w in want]
        floats = client.embeddings.create(model="tiny", input="cat", encoding_format="float")
        assert floats.data[0].embedding == pytest.approx(running.pipe("cat", mode="text"), abs=1e-6)


# --------------------------------------------------------------------------------------------- generation


PROMPTS = ["KING.\nMy lord", "QUEEN.", "thou art a fair day and I shall come"]


def test_completions_and_chat_answer_what_the_pipeline_answers(generation_run: Path) -> None:
    openai = pytest.importorskip("openai")
    with serving(generation_run) as running:
        pipe = running.pipe
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=CALL_TIMEOUT, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny"]
        got = client.completions.create(model="tiny", prompt=PROMPTS, max_tokens=6, temperature=0)
        assert [c.text for c in got.choices] == pipe(PROMPTS, max_new_tokens=6)
        assert [c.index for c in got.choices] == [0, 1, 2]
        assert got.usage.completion_tokens > 0 and got.usage.total_tokens == \
            got.usage.prompt_tokens + got.usage.completion_tokens
        assert {c.finish_reason for c in got.choices} <= {"stop", "length"}
        stopped = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=8, stop=["\n"])
        assert stopped.choices[0].text == pipe(PROMPTS[0], max_new_tokens=8, stop=["\n"])
        messages = [{"role": "user", "content": "My lord"}]
        chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6)
        assert chat.choices[0].message.content == pipe([messages], max_new_tokens=6)[0]
        assert chat.choices[0].message.role == "assistant"
        # sampling: n completions, reproducible with a seed
        sampled = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=5, temperature=0.9,
                                            n=2, seed=3)
        again = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=5, temperature=0.9,
                                          n=2, seed=3)
        assert len(sampled.choices) == 2 and [c.text for c in sampled.choices] == [c.text for c in again.choices]
        # greedy has one answer: n > 1 without sampling is refused, naming n
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            client.completions.create(model="tiny", prompt="x", n=2, temperature=0)
        assert refused.value.body["param"] == "n"


def test_streaming_chat_through_the_openai_client(generation_run: Path) -> None:
    openai = pytest.importorskip("openai")
    with serving(generation_run) as running:
        pipe = running.pipe
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=CALL_TIMEOUT, max_retries=0)
        messages = [{"role": "system", "content": "Speak."}, {"role": "user", "content": "My lord"}]
        chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == pipe([messages], max_new_tokens=8)[0]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model="tiny", prompt=PROMPTS[0], max_tokens=8, stream=True))
        assert streamed == pipe(PROMPTS[0], max_new_tokens=8)
        cut = "".join(c.choices[0].text for c in client.completions.create(
            model="tiny", prompt=PROMPTS[0], max_tokens=12, stop=["\n", "lord"], stream=True))
        assert cut == pipe(PROMPTS[0], max_new_tokens=12, stop=["\n", "lord"])  # no stop string shown
        # the raw events end with [DONE]
        with httpx.stream("POST", running.url + "/v1/chat/completions", timeout=CALL_TIMEOUT,
                          json={"messages": messages, "max_tokens": 4, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"


def test_concurrent_streams_are_decoded_in_one_batch_each_with_its_own_text(generation_run: Path) -> None:
    """16 streaming chats at once through the official async client: merged into batched generations (the batch
    metric shows a call of several requests), each stream's text the pipeline's greedy answer for its messages."""
    openai = pytest.importorskip("openai")
    conversations = [[{"role": "user", "content": f"{w} my lord"}] for w in ["Good", "Sweet", "Fair", "Noble"] * 4]
    with serving(generation_run, max_wait_ms=100) as running:
        client = openai.AsyncOpenAI(base_url=running.url + "/v1", api_key="unused", timeout=CALL_TIMEOUT,
                                    max_retries=0)

        async def one(messages: list) -> str:
            stream = await client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        async def every() -> list[str]:
            try:
                return await asyncio.gather(*[one(m) for m in conversations])
            finally:
                await client.close()

        texts = asyncio.run(every())
        assert texts == running.pipe(conversations, max_new_tokens=8)
        calls = running.metric("nlpkit_batch_requests_count")
        assert running.metric("nlpkit_batch_requests_bucket", le="1.0") < calls, "no two streams shared a call"


def test_a_generator_export_is_served_and_streams_like_its_pipeline(generation_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    openai = pytest.importorskip("openai")
    from nlpkit import export

    out = tmp_path / "lm-fp32"
    export.export_model(str(generation_run), out)
    with serving(out) as running:
        pipe = running.pipe
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", timeout=CALL_TIMEOUT, max_retries=0)
        got = client.completions.create(model="tiny", prompt=PROMPTS, max_tokens=6)
        assert [c.text for c in got.choices] == pipe(PROMPTS, max_new_tokens=6)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model="tiny", prompt=PROMPTS[0], max_tokens=6, stream=True))
        assert streamed == pipe(PROMPTS[0], max_new_tokens=6)


def test_a_client_that_leaves_a_stream_frees_its_slot(generation_run: Path) -> None:
    with serving(generation_run, max_concurrency=1) as running:
        body = {"messages": [{"role": "user", "content": "My lord"}], "max_tokens": 200, "stream": True}
        with httpx.stream("POST", running.url + "/v1/chat/completions", json=body, timeout=CALL_TIMEOUT) as r:
            next(r.iter_lines())  # the first event, then hang up
        deadline = time.monotonic() + START_TIMEOUT
        while running.metric("nlpkit_requests_in_flight") > 0:
            assert time.monotonic() < deadline, "the stream's slot was not freed"
            time.sleep(0.05)
        with running.client() as c:
            r = c.post("/v1/completions", json={"prompt": "KING.", "max_tokens": 3})
            assert r.status_code == 200


# --------------------------------------------------------------------------------------------- process


def test_sigterm_answers_the_requests_in_flight_then_exits_0(sentiment_run: Path) -> None:
    """The real command in a subprocess: requests queued in the batcher (a long --max-wait-ms) when SIGTERM
    arrives are all answered, then the process exits 0."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "nlpkit.cli", "serve", str(sentiment_run), "--port", str(port),
                             "--max-wait-ms", "3000", "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

        async def load_then_term() -> list:
            async with httpx.AsyncClient(base_url=url, timeout=CALL_TIMEOUT) as c:
                pending = [asyncio.ensure_future(c.post("/v1/classify", json={"inputs": f"great {i}"}))
                           for i in range(6)]
                arrived_by = time.monotonic() + START_TIMEOUT
                while True:  # all six are in, queued for their batch
                    metrics = (await c.get("/metrics")).text
                    if "nlpkit_requests_in_flight 6.0" in metrics:
                        break
                    assert time.monotonic() < arrived_by, "the requests did not arrive"
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*pending)

        responses = asyncio.run(load_then_term())
        assert [r.status_code for r in responses] == [200] * 6
        assert proc.wait(START_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_request_delivered_to_an_idle_connection_before_the_shutdown_is_answered() -> None:
    """A keep-alive connection's next request sits unread in its socket when the shutdown begins (the event loop
    had no turn to read it, as when it is busy answering others): it is answered before the connection closes,
    not dropped with it (uvicorn's own shutdown closes the idle connection, and the client gets a reset)."""
    import uvicorn

    async def app(scope: dict, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
        await send({"type": "http.response.body", "body": b"answered"})

    async def scenario() -> bytes:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
        config.load()
        server = DrainingServer(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.servers[0].sockets[0].getsockname()[1])
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        writer.write(request)
        await asyncio.wait_for(reader.readuntil(b"answered"), CALL_TIMEOUT)  # the connection is idle again
        writer.write(request)  # in the server's socket at once (loopback), unread: no loop turn before the shutdown
        await asyncio.wait_for(server.shutdown(), START_TIMEOUT)
        try:
            return await asyncio.wait_for(reader.read(), CALL_TIMEOUT)
        finally:
            writer.close()

    rest = asyncio.run(scenario())  # everything the server sent until it closed the connection
    assert rest.startswith(b"HTTP/1.1 200 OK") and rest.endswith(b"answered")


def test_serve_help_explains_every_option() -> None:
    from nlpkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = sub.choices["serve"].format_help()
    for option in ("--host", "--port", "--max-batch-tokens", "--max-wait-ms", "--max-concurrency", "--max-inputs",
                   "--max-chars", "--timeout", "--api-key", "--cors-origin", "--workers", "--dtype", "--log-level"):
        assert option in text, option
    args = parser.parse_args(["serve", "RUN"])
    assert args.host == "127.0.0.1"  # loopback unless asked
