"""The sentiment demo (``nlpkit demo RUN``): a text -> every label with its score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline
    from nlpkit.plugins.sentiment.task import SentimentTask


@torch.inference_mode()
def label_scores(task: SentimentTask, text: str) -> dict[str, float]:
    """Every label's score for ``text`` (the softmax, or multi-label sigmoid, that ``predict`` ranks)."""
    enc = task.tokenizer([text], truncation=True, max_length=task.cfg.data.max_length, return_tensors="pt")
    device = next(task.model.parameters()).device
    logits = task.model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
    probs = task.probabilities(logits)[0].cpu().tolist()
    return dict(zip(task.labels, probs))


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Text box -> a ``gr.Label`` with every label and its score, the best one on top."""
    import gradio as gr

    task: SentimentTask = pipe.task  # type: ignore[assignment]

    def classify(text: str) -> dict[str, Any] | None:
        if not (text or "").strip():
            return None  # predict gives no label for a blank text
        return label_scores(task, text)

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
