"""What fine-tuning changed: the untuned model's perplexities and sample continuations against the tuned one's.

:class:`BeforeAfter` is a loop callback; it fills ``results.extra`` (report.json's top level):

* ``baseline``: the untuned model's validation and test metrics, measured before the first update;
* ``samples``: ``{prompt, untuned, fine_tuned}`` for each of ``sample_prompts`` (main process only);
* ``perplexity_before_after``: untuned vs final perplexity and the relative drop, per split.

:func:`report_sections` renders them for report.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nlpkit.callbacks import Callback
from nlpkit.report import md_table

if TYPE_CHECKING:
    from nlpkit.plugins.generation.config import GenerationGenerateConfig
    from nlpkit.task import RunResults
    from nlpkit.training import Loop

SPLITS = ("validation", "test")


class BeforeAfter(Callback):
    """Measures the untuned model before training and continues the sample prompts before and after."""

    def __init__(self) -> None:
        self.untuned: list[str] = []

    def before_training(self, loop: Loop) -> None:
        # Fired before the LoRA callback wraps the model and before a checkpoint is resumed: the base model.
        baseline = {}
        for split in SPLITS:
            baseline[split], _ = loop.evaluate(split, desc=f"Untuned model on {split}")
            loop.accelerator.print(f"untuned {split} perplexity: {baseline[split]['perplexity']:.3f}")
        loop.results.extra["baseline"] = baseline
        self.untuned = self._continuations(loop)
        self._store_samples(loop, [""] * len(self.untuned))

    def after_training(self, loop: Loop) -> None:
        # Final metrics are in, and the final (best) weights are the loop's model.
        if not loop.finished:
            return
        self._store_samples(loop, self._continuations(loop))
        r = loop.results
        summary = {}
        for split, final in zip(SPLITS, (r.validation, r.test)):
            b, a = r.extra["baseline"][split]["perplexity"], final["perplexity"]
            summary[split] = {"untuned": b, "fine_tuned": a,
                              "relative_drop": (b - a) / b if math.isfinite(b) and b > 0 else None}
        r.extra["perplexity_before_after"] = summary

    def _continuations(self, loop: Loop) -> list[str]:
        """The sample prompts' greedy (or configured) continuations by the loop's model, on the main process."""
        task = loop.task
        if not task.cfg.sample_prompts or not loop.accelerator.is_main_process:
            return []
        model = loop.accelerator.unwrap_model(loop.model)
        gen, _ = task.decoding(num_return_sequences=1)
        with loop.accelerator.autocast():
            outs = task.continue_prompts(model, list(task.cfg.sample_prompts), gen)
        return [o[0] for o in outs]

    def _store_samples(self, loop: Loop, tuned: list[str]) -> None:
        loop.results.extra["samples"] = [{"prompt": p, "untuned": b, "fine_tuned": a} for p, b, a
                                         in zip(loop.task.cfg.sample_prompts, self.untuned, tuned)]


def report_sections(results: RunResults, gen: GenerationGenerateConfig) -> list[tuple[str, str]]:
    """report.md sections: the perplexity table and the samples side by side (``gen``: how they were decoded)."""
    sections = []
    summary = results.extra.get("perplexity_before_after")
    if summary:
        rows = [[split, v["untuned"], v["fine_tuned"],
                 f"{100 * v['relative_drop']:.1f}%" if v["relative_drop"] is not None else "n/a"]
                for split, v in summary.items()]
        sections.append(("Perplexity before and after fine-tuning",
                         md_table(rows, ["split", "untuned", "fine-tuned", "relative drop"])))
    samples: list[dict[str, Any]] = results.extra.get("samples") or []
    if samples:
        how = ("sampled" if gen.do_sample else "greedy") + f", max_new_tokens={gen.max_new_tokens}"
        blocks = [f"Decoding: {how}.", ""]
        for s in samples:
            blocks += [f"**Prompt:** `{s['prompt']!r}`", "", "Untuned:", "", "```text", s["prompt"] + s["untuned"],
                       "```", "", "Fine-tuned:", "", "```text", s["prompt"] + s["fine_tuned"], "```", ""]
        sections.append(("Sample continuations (before vs after)", "\n".join(blocks)))
    return sections
