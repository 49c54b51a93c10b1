"""The word2vec demo (``nlpkit demo RUN``): a word's neighbours, analogies (a : b :: c : ?), similarity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlpkit.errors import NlpkitError

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline
    from nlpkit.plugins.word2vec.task import Word2VecTask

HEADERS = ["word", "cosine similarity"]


def _rows(found: list[dict[str, Any]]) -> list[list[Any]]:
    return [[d["word"], round(d["score"], 4)] for d in found]


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Three tabs over the pipeline's modes: ``neighbors``, ``analogy``, ``similarity``. A word the vectors do
    not know shows the pipeline's message (with the closest known spellings) in the page."""
    import gradio as gr

    task: Word2VecTask = pipe.task  # type: ignore[assignment]

    def ask(inputs: Any, **options: Any) -> Any:
        try:
            return pipe([inputs], **options)[0]
        except NlpkitError as err:  # an unknown word: say so in the page, not as a bare "Error"
            raise gr.Error(str(err)) from err

    def neighbours(word: str, topn: float) -> list[list[Any]]:
        return _rows(ask(word.strip(), mode="neighbors", topn=int(topn)))

    def analogy(a: str, b: str, c: str, topn: float) -> list[list[Any]]:
        return _rows(ask((a.strip(), b.strip(), c.strip()), mode="analogy", topn=int(topn)))

    def similarity(w1: str, w2: str) -> float:
        return round(ask((w1.strip(), w2.strip()), mode="similarity"), 4)

    words = task.model.index_to_key
    first = next((w for w in words[:200] if w.isalpha() and len(w) > 3), words[0] if len(words) else "")
    with gr.Blocks() as demo:
        gr.Markdown(f"{len(words):,} words of {task.model.vector_size} dimensions.")
        with gr.Tab("Neighbours"):
            with gr.Row():
                word = gr.Textbox(label="Word", value=first, elem_id="w2v-word")
                topn = gr.Slider(1, 50, value=10, step=1, label="How many")
            button = gr.Button("Nearest words", variant="primary", elem_id="w2v-neighbours-submit")
            table = gr.Dataframe(headers=HEADERS, label="Nearest words", interactive=False,
                                 elem_id="w2v-neighbours")
            button.click(neighbours, [word, topn], table)
            word.submit(neighbours, [word, topn], table)
        with gr.Tab("Analogy"):
            gr.Markdown("*a* is to *b* as *c* is to **?** (the words nearest to b - a + c): "
                        "man : king :: woman : queen.")
            with gr.Row():
                a = gr.Textbox(label="a", elem_id="w2v-a")
                b = gr.Textbox(label="b", elem_id="w2v-b")
                c = gr.Textbox(label="c", elem_id="w2v-c")
                topn_analogy = gr.Slider(1, 50, value=10, step=1, label="How many")
            button = gr.Button("Complete the analogy", variant="primary", elem_id="w2v-analogy-submit")
            answers = gr.Dataframe(headers=HEADERS, label="Answers", interactive=False, elem_id="w2v-analogy")
            button.click(analogy, [a, b, c, topn_analogy], answers)
        with gr.Tab("Similarity"):
            with gr.Row():
                w1 = gr.Textbox(label="First word", elem_id="w2v-w1")
                w2 = gr.Textbox(label="Second word", elem_id="w2v-w2")
            button = gr.Button("Compare", variant="primary", elem_id="w2v-similarity-submit")
            score = gr.Number(label="Cosine similarity", interactive=False, elem_id="w2v-similarity")
            button.click(similarity, [w1, w2], score)
    return demo
