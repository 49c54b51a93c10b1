"""The sentiment demo (``nlpkit demo RUN``): a text -> every label with its score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline
    from nlpkit.plugins.sentiment.task import SentimentTask


def label_scores(pipe: Pipeline, text: str) -> dict[str, float]:
    """Every label's score for ``text`` (the softmax, or multi-label sigmoid, that ``predict`` ranks).

    Goes through the pipeline's own batched predict (``top_k=None``: every label), never the model directly:
    the model may be a PyTorch module on any device or an ONNX Runtime session (``nlpkit export``), whose int8
    close calls the predict path re-scores in fp32."""
    return {p["label"]: p["score"] for p in pipe(text, top_k=None)}


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Text box -> a ``gr.Label`` with every label and its score, the best one on top."""
    import gradio as gr

    task: SentimentTask = pipe.task  # type: ignore[assignment]

    def classify(text: str) -> dict[str, Any] | None:
        if not (text or "").strip():
            return None  # predict gives no label for a blank text
        return label_scores(pipe, text)

    examples = task.usage_example if isinstance(task.usage_example, list) else [task.usage_example]
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=4, placeholder="Type a text and press Classify (or Enter).",
                                  elem_id="sentiment-text")
                button = gr.Button("Classify", variant="primary", elem_id="sentiment-submit")
                gr.Examples([[e] for e in examples], inputs=text)
            with gr.Column():
                scores = gr.Label(label="Labels and scores", num_top_classes=len(task.labels) or None,
                                  elem_id="sentiment-scores")
        button.click(classify, text, scores)
        text.submit(classify, text, scores)
    return demo
