"""The ner demo (``nlpkit demo RUN``): a text -> its entities highlighted, with a table of the spans."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline


def highlighted(pipe: Pipeline, text: str) -> tuple[dict[str, Any], list[list[Any]]]:
    """``gr.HighlightedText``'s value (the text and its entities) and the table rows of the spans, from the
    pipeline's own batched predict (PyTorch or an ONNX export alike)."""
    spans = pipe(text) if (text or "").strip() else []
    value = {"text": text or "", "entities": [{"entity": s["type"], "start": s["start"], "end": s["end"]}
                                               for s in spans]}
    rows = [[s["text"], s["type"], round(s["score"], 4), s["start"], s["end"]] for s in spans]
    return value, rows


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Text box -> ``gr.HighlightedText`` with every entity marked by type, and the spans as a table."""
    import gradio as gr

    task = pipe.task
    examples = task.usage_example if isinstance(task.usage_example, list) else [task.usage_example]
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=4, placeholder="Type a text and press Find entities (or Enter).",
                                  elem_id="ner-text")
                button = gr.Button("Find entities", variant="primary", elem_id="ner-submit")
                gr.Examples([[e] for e in examples], inputs=text)
            with gr.Column():
                marked = gr.HighlightedText(label="Entities", combine_adjacent=False, show_legend=True,
                                            elem_id="ner-entities")
                table = gr.Dataframe(headers=["text", "type", "score", "start", "end"], label="Spans",
                                     interactive=False, elem_id="ner-spans")
        button.click(lambda t: highlighted(pipe, t), text, [marked, table])
        text.submit(lambda t: highlighted(pipe, t), text, [marked, table])
    return demo
