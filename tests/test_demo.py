"""``nlpkit demo`` in a real headless browser: the page of a tiny run loads, and an input typed into it gives the
same answer as ``nlpkit.pipeline`` (sentiment, word2vec, translation, generation); plus the command line and
the errors without Gradio or without a demo.

The browser is Debian's Chromium (``apt-get install -y chromium``) driven by Playwright (``pip install
playwright``; Playwright's own browser download is not used). ``NLPKIT_CHROMIUM`` names another Chromium
binary. ``NLPKIT_DEMO_SCREENSHOTS=<folder>`` also saves each page as ``demo-<task>.png`` there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import sentiment_overrides
from tiny_generation import generation_overrides, play_corpus, tiny_llama
from tiny_translation import pairs, translation_overrides, write_folder
from tiny_word2vec import planted_texts, w2v_overrides, write_corpus_file

import nlpkit
from nlpkit.cli import build_parser
from nlpkit.config import ConfigError
from nlpkit.demo import INSTALL_HINT, build_app, launch_demo
from nlpkit.errors import UsageError

CHROMIUM = os.environ.get("NLPKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
#: How long the page may take to show an answer (the tiny models answer in milliseconds; CI machines are busy).
ANSWER_MS = 120_000


# --------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(run: Path) -> Iterator[str]:
    """The run's demo (``nlpkit demo``'s own launch) on a free localhost port while the block runs; its URL."""
    port = free_port()
    app = launch_demo(run, port=port, host="127.0.0.1", block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def open_demo(page, url: str, task: str) -> None:
    """Load the page and wait until Gradio has rendered the header with the run's task."""
    page.goto(url)
    page.locator("#nlpkit-demo-header").filter(has_text=task).wait_for()
    assert page.title().startswith(f"nlpkit demo: {task}")


def screenshot(page, task: str) -> None:
    folder = os.environ.get("NLPKIT_DEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"demo-{task}.png"), full_page=True)


def column(page, table: str, col: int) -> list[str]:
    """The texts of one column of a gr.Dataframe (its cells carry data-testid="cell-ROW-COL")."""
    cells = page.locator(f"#{table} [data-testid^='cell-'][data-col='{col}']")
    return [t.strip() for t in cells.all_inner_texts()]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("No Chromium to drive: install Debian's package (apt-get install -y chromium) or set "
                    "NLPKIT_CHROMIUM to a Chromium binary.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium refuses to start its sandbox
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(ANSWER_MS)
    yield page
    context.close()


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert: Path, sentiment_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-sentiment") / "run"
    report = nlpkit.train("sentiment", **sentiment_overrides(tiny_bert, sentiment_data, out,
                                                             **{"train.max_steps": 12}))
    return Path(report["run_dir"])


@pytest.fixture(scope="module")
def word2vec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo-word2vec")
    corpus = write_corpus_file(folder / "corpus.txt", planted_texts(300))
    report = nlpkit.train("word2vec", **w2v_overrides(corpus, folder / "run", **{"w2v.epochs": 10}))
    return Path(report["run_dir"])


# --------------------------------------------------------------------------------------------- in the browser


def test_sentiment_demo_shows_the_pipelines_label_and_every_score(sentiment_run: Path, page) -> None:
    pipe = nlpkit.pipeline(str(sentiment_run))
    with served(sentiment_run) as url:
        for text in ["a wonderful and moving film", "the plot was dull and tedious"]:
            expected = pipe(text)
            open_demo(page, url, "sentiment")  # a fresh page: no answer of the previous text on it
            assert "test accuracy" in page.locator("#nlpkit-demo-header").inner_text()
            page.locator("#sentiment-text textarea").fill(text)
            page.locator("#sentiment-submit").click()
            shown = page.locator("#sentiment-scores [data-testid='label-output-value']")
            shown.wait_for()
            assert shown.inner_text().strip() == expected["label"]
            # every label is listed with its score as a percentage, the best one with the pipeline's score
            scores = {m[1]: int(m[2]) for m in re.finditer(r"(\S+)\s+(\d+)%",
                                                            page.locator("#sentiment-scores").inner_text())}
            assert set(scores) == set(pipe.task.labels)
            assert abs(scores[expected["label"]] - expected["score"] * 100) <= 0.5 + 1e-6
        screenshot(page, "sentiment")


def test_word2vec_demo_shows_the_pipelines_neighbours_analogy_and_similarity(word2vec_run: Path, page) -> None:
    pipe = nlpkit.pipeline(str(word2vec_run))
    with served(word2vec_run) as url:
        open_demo(page, url, "word2vec")
        expected = [d["word"] for d in pipe("cat", mode="neighbors", topn=5)]
        page.locator("#w2v-word textarea").fill("cat")
        page.get_by_label("How many").first.fill("5")
        page.locator("#w2v-neighbours-submit").click()
        page.locator("#w2v-neighbours [data-testid='cell-4-0']").wait_for()
        assert column(page, "w2v-neighbours", 0) == expected
        screenshot(page, "word2vec")

        page.get_by_role("tab", name="Analogy").click()
        expected = [d["word"] for d in pipe([("cat", "dog", "apple")], mode="analogy")[0]]
        for box, word in (("w2v-a", "cat"), ("w2v-b", "dog"), ("w2v-c", "apple")):
            page.locator(f"#{box} textarea").fill(word)
        page.locator("#w2v-analogy-submit").click()
        page.locator(f"#w2v-analogy [data-testid='cell-{len(expected) - 1}-0']").wait_for()
        assert column(page, "w2v-analogy", 0) == expected

        page.get_by_role("tab", name="Similarity").click()
        expected_similarity = pipe([("cat", "dog")], mode="similarity")[0]
        page.locator("#w2v-w1 textarea").fill("cat")
        page.locator("#w2v-w2 textarea").fill("dog")
        page.locator("#w2v-similarity-submit").click()
        number = page.locator("#w2v-similarity input")
        # an empty Number shows 0 until the answer arrives (the planted words' similarity is far from 0)
        page.wait_for_function("el => el.value !== '' && parseFloat(el.value) !== 0", arg=number.element_handle(),
                               timeout=ANSWER_MS)
        assert float(number.input_value()) == pytest.approx(expected_similarity, abs=1e-4)

        # a word the vectors do not know: the pipeline's message, in the page
        page.locator("#w2v-w2 textarea").fill("zebra")
        page.locator("#w2v-similarity-submit").click()
        page.get_by_text("'zebra' is not in the vocabulary").first.wait_for()


def test_translation_demo_translates_like_the_pipeline(tmp_path: Path, page, monkeypatch: pytest.MonkeyPatch) -> None:
    from nlpkit.plugins.translation import TranslationTask

    data = write_folder(tmp_path / "data", pairs(64, 1), pairs(12, 2), pairs(13, 3))
    run = Path(nlpkit.train("translation", **translation_overrides(data, tmp_path / "run",
                                                                   **{"train.max_steps": 6}))["run_dir"])
    pipe = nlpkit.pipeline(str(run))
    source = "the red cat sleeps"
    expected = pipe(source, num_beams=2, max_new_tokens=10)
    # the server runs in this process: record the decoding options the page sends to predict
    sent: list[dict] = []
    predict = TranslationTask.predict

    def spy(self, inputs, batch_size=64, **kwargs):
        sent.append(kwargs)
        return predict(self, inputs, batch_size, **kwargs)

    monkeypatch.setattr(TranslationTask, "predict", spy)
    with served(run) as url:
        open_demo(page, url, "translation")
        page.locator("#translation-source textarea").fill(source)
        page.get_by_text("Decoding options").click()
        page.get_by_label("Beams (1: greedy)").first.fill("2")
        page.get_by_label("Max new tokens").first.fill("10")
        page.locator("#translation-submit").click()
        output = page.locator("#translation-output textarea")
        page.wait_for_function("el => el.value !== ''", arg=output.element_handle())
        assert output.input_value() == expected
        screenshot(page, "translation")
    assert sent[-1] | {"num_beams": 2, "max_new_tokens": 10} == sent[-1]


def test_generation_demo_streams_the_pipelines_continuation(tmp_path: Path, page,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    model = tiny_llama(tmp_path_factory)
    overrides = generation_overrides(model, play_corpus(tmp_path / "data"), tmp_path / "run",
                                     **{"train.max_steps": 6, "generate.max_new_tokens": 16,
                                        # a few-step model repeats newlines; words show that text arrived
                                        "generate.no_repeat_ngram_size": 2})
    run = Path(nlpkit.train("generation", **overrides)["run_dir"])
    pipe = nlpkit.pipeline(str(run))
    prompt = "KING.\nMy lord"
    expected = pipe(prompt)  # greedy, the run's decoding: what the page starts with
    assert expected.strip()

    # the handler streams: a growing text, piece by piece, that ends as the pipeline's continuation
    app = build_app(run, pipe=pipe)
    handler = next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == "continue_prompt")
    parts = list(handler(prompt, 16, False, 1.0, 1.0, 50, 1.0, None))
    assert len(parts) > 1 and all(b.startswith(a) for a, b in zip(parts, parts[1:])) and parts[-1] == expected

    with served(run) as url:
        open_demo(page, url, "generation")
        page.locator("#generation-prompt textarea").fill(prompt)
        page.locator("#generation-submit").click()
        output = page.locator("#generation-output textarea")
        page.wait_for_function("([el, text]) => el.value === text", arg=[output.element_handle(), expected])
        screenshot(page, "generation")


# --------------------------------------------------------------------------------------------- without a browser


def test_command_line_options() -> None:
    args = build_parser().parse_args(["demo", "outputs/run", "--port", "7999", "--host", "0.0.0.0"])
    assert (args.run, args.port, args.host, args.share, args.task) == ("outputs/run", 7999, "0.0.0.0", "no", None)
    assert build_parser().parse_args(["demo", "run", "--share", "yes"]).share == "yes"


def test_demo_without_gradio_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    from nlpkit.cli import console_main

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "nlpkit-hf\[demo\]"'):
        build_app(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        console_main(["demo", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: nlpkit demo needs Gradio, which is not installed: {INSTALL_HINT}"


def test_task_without_a_demo_is_a_usage_error() -> None:
    from nlpkit.task import Task

    class Bare(Task):
        name = "bare"

    with pytest.raises(UsageError, match="The bare task has no demo"):
        Bare.__new__(Bare).build_demo(None)


def test_demo_of_an_onnx_export_predicts_what_the_run_does(sentiment_run: Path, tmp_path: Path) -> None:
    """``nlpkit demo EXPORT``: the page's handler answers through the export's pipeline (an ONNX Runtime session
    has no ``parameters()``), with the PyTorch run's labels; an int8 export's close calls are re-scored in fp32
    as its pipeline does."""
    pytest.importorskip("onnxruntime")
    from nlpkit.export import export_model

    texts = ["a wonderful and moving film", "the plot was dull and tedious", "it was a film"]
    expected = nlpkit.pipeline(str(sentiment_run), device="cpu")(texts, top_k=None)
    for name, options in (("fp32", {}), ("int8", {"quantize": "int8"})):
        export = tmp_path / name
        export_model(str(sentiment_run), export, **options)
        pipe = nlpkit.pipeline(str(export))
        assert type(pipe.model).__name__ == "OnnxModel"
        app = build_app(export)
        assert "sentiment" in app.title
        classify = next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == "classify")
        assert classify("   ") is None  # a blank text: no label, as predict gives
        for text, ranked in zip(texts, expected):
            shown = classify(text)
            assert set(shown) == set(pipe.task.labels) and sum(shown.values()) == pytest.approx(1, abs=1e-4)
            # the export's own pipeline, every label: the same scores (int8: after its fp32 fallback)
            assert shown == {p["label"]: p["score"] for p in pipe(text, top_k=None)}
            if name == "fp32":  # the PyTorch run's labels and scores
                assert max(shown, key=shown.get) == ranked[0]["label"]
                assert shown == pytest.approx({p["label"]: p["score"] for p in ranked}, abs=1e-4)
