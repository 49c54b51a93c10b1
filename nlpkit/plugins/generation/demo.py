"""The generation demo (``nlpkit demo RUN``): a prompt -> its continuation, streamed as it is generated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio

    from nlpkit.pipeline import Pipeline
    from nlpkit.plugins.generation.task import GenerationTask


def build_demo(pipe: Pipeline) -> gradio.Blocks:
    """Prompt box -> continuation box filled piece by piece (:meth:`GenerationTask.stream`); the decoding
    options start at the run's ``generate.*``."""
    import gradio as gr

    task: GenerationTask = pipe.task  # type: ignore[assignment]
    gen = task.cfg.generate

    def continue_prompt(prompt: str, max_new_tokens: float, sample: bool, temperature: float, top_p: float,
                        top_k: float, repetition_penalty: float, seed: float | None) -> Iterator[str]:
        text = ""
        # Streaming shows one sequence, decoded greedily or sampled: beam search cannot stream.
        pieces = task.stream(prompt or "", max_new_tokens=int(max_new_tokens), do_sample=bool(sample),
                             temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                             repetition_penalty=float(repetition_penalty), num_beams=1, num_return_sequences=1,
                             seed=None if seed is None else int(seed))
        for piece in pieces:
            text += piece
            yield text

    prompts = task.cfg.sample_prompts or [task.usage_example]
    with gr.Blocks() as demo:
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=5, elem_id="generation-prompt",
                                    placeholder="Type the start of a text and press Generate.")
                with gr.Row():
                    button = gr.Button("Generate", variant="primary", elem_id="generation-submit")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column():
                output = gr.Textbox(label="Continuation", lines=10, interactive=False, elem_id="generation-output")
        with gr.Accordion("Decoding options", open=False):
            with gr.Row():
                max_new = gr.Slider(1, max(1024, gen.max_new_tokens), value=gen.max_new_tokens, step=1,
                                    label="Max new tokens")
                sample = gr.Checkbox(value=gen.do_sample, label="Sample (else greedy)")
                seed = gr.Number(value=gen.seed, precision=0, label="Seed (sampling; empty: random)")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=min(max(gen.temperature, 0.05), 2.0), step=0.05,
                                        label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=min(max(gen.top_p, 0.05), 1.0), step=0.05, label="Top-p")
                top_k = gr.Slider(0, 200, value=min(gen.top_k, 200), step=1, label="Top-k (0: off)")
                penalty = gr.Slider(0.5, 2.0, value=min(max(gen.repetition_penalty, 0.5), 2.0), step=0.05,
                                    label="Repetition penalty (1: off)")
        gr.Examples([[p] for p in prompts if isinstance(p, str)], inputs=prompt)
        inputs = [prompt, max_new, sample, temperature, top_p, top_k, penalty, seed]
        run = button.click(continue_prompt, inputs, output)
        stop.click(None, cancels=[run])
    return demo
