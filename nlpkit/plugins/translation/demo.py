"""The translation demo (``nlpkit demo RUN``): a source text -> its translation, with decoding options."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline
    from nlpkit.plugins.translation.task import TranslationTask


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Source box -> translation box; beams, max new tokens and sampling start at the run's ``generate.*``."""
    import gradio as gr

    task: TranslationTask = pipe.task  # type: ignore[assignment]
    gen = task.cfg.generate
    info = task.info
    source_lang = getattr(info, "source_lang", None) or "source"
    target_lang = getattr(info, "target_lang", None) or "target"

    def translate(text: str, beams: float, max_new_tokens: float, sample: bool, temperature: float,
                  top_p: float) -> str:
        # One translation per source: the run's num_return_sequences is for evaluation, not for this box.
        return pipe(text or "", num_beams=int(beams), max_new_tokens=int(max_new_tokens), do_sample=bool(sample),
                    temperature=float(temperature), top_p=float(top_p), num_return_sequences=1)

    examples = task.usage_example if isinstance(task.usage_example, list) else [task.usage_example]
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                source = gr.Textbox(label=f"Source ({source_lang})", lines=4, elem_id="translation-source",
                                    placeholder="Type a sentence and press Translate.")
                button = gr.Button("Translate", variant="primary", elem_id="translation-submit")
            with gr.Column():
                target = gr.Textbox(label=f"Translation ({target_lang})", lines=4, interactive=False,
                                    elem_id="translation-output")
        with gr.Accordion("Decoding options", open=False):
            with gr.Row():
                beams = gr.Slider(1, 8, value=gen.num_beams, step=1, label="Beams (1: greedy)")
                max_new = gr.Slider(1, max(512, gen.max_new_tokens), value=gen.max_new_tokens, step=1,
                                    label="Max new tokens")
            with gr.Row():
                sample = gr.Checkbox(value=gen.do_sample, label="Sample instead of greedy/beam search")
                temperature = gr.Slider(0.05, 2.0, value=min(max(gen.temperature, 0.05), 2.0), step=0.05,
                                        label="Temperature (sampling)")
                top_p = gr.Slider(0.05, 1.0, value=min(max(gen.top_p, 0.05), 1.0), step=0.05,
                                  label="Top-p (sampling)")
        gr.Examples([[e] for e in examples], inputs=source)
        inputs = [source, beams, max_new, sample, temperature, top_p]
        button.click(translate, inputs, target)
        source.submit(translate, inputs, target)
    return demo
