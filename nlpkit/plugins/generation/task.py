"""Generation: fine-tune a causal language model (full or LoRA); perplexity and controllable generation.

Data: plain text packed into blocks of ``data.block_size`` tokens (EOS between documents), or per-example
instruction data (``prompt``/``response`` columns, or a ``messages`` list rendered with the tokenizer's chat
template) with the loss on response tokens only. The reusable pieces live in :mod:`nlpkit.causal_lm`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from nlpkit import causal_lm, lora
from nlpkit.callbacks import LoraAdapters
from nlpkit.data import load_splits
from nlpkit.errors import ConfigError, DataError, UsageError
from nlpkit.metrics import compute
from nlpkit.plugins.generation.before_after import BeforeAfter, report_sections
from nlpkit.plugins.generation.cli import add_generate_command
from nlpkit.plugins.generation.config import GenerationConfig, GenerationGenerateConfig
from nlpkit.plugins.generation.data import check_and_clean, detect_format, middle_windows
from nlpkit.task import Data, DataInfo, RunResults, Task

if TYPE_CHECKING:
    import argparse

    from nlpkit.callbacks import Callback

#: Options of a single generation call that are not decoding settings of ``generate.*``.
CALL_OPTIONS = ("return_full_text", "max_prompt_tokens")


@dataclass
class GenerationInfo(DataInfo):
    #: How rows become examples (``text``, ``prompt_response`` or ``chat``): ``data.format`` with ``auto``
    #: resolved from the data's columns.
    format: Optional[str] = None


class GenerationTask(Task):
    """Causal language modelling (full or LoRA fine-tuning). Metrics: perplexity, sample continuations."""

    Config = GenerationConfig
    Info = GenerationInfo
    hub_task_type = "text-generation"
    usage_example = "Once upon a time"
    architectures = ("ForCausalLM",)
    metric_names = ("perplexity", "loss", "tokens")
    cfg: GenerationConfig
    info: GenerationInfo

    # ------------------------------------------------------------------ data
    def load_data(self) -> Data:
        d = self.cfg.data
        ds, _meta = load_splits(d, self.cfg.seed)
        cols = ds["train"].column_names
        fmt = detect_format(d, cols)
        if d.packing and fmt == "text":
            raise ConfigError("data.packing=true is for prompt_response and chat data; format=text is always "
                              "packed into data.block_size blocks. Drop data.packing or set data.format.")
        keep, dropped = check_and_clean(ds, d, fmt)
        notes: dict[str, Any] = {}
        if any(dropped.values()):
            notes["empty texts skipped"] = dropped
        notes["format"] = fmt
        if d.split_by and d.split_by in cols:
            notes["held-out " + d.split_by] = {s: sorted(set(ds[s][d.split_by])) for s in ("validation", "test")}
        if d.packing:
            notes["packing"] = f"first-fit rows of up to {d.max_length} tokens, attention kept within examples"
        ds = ds.remove_columns([c for c in cols if c not in keep])
        if fmt == "text" and d.max_eval_tokens:
            tokenizer = causal_lm.load_tokenizer(self.cfg.model.name,
                                                 trust_remote_code=self.cfg.model.trust_remote_code)
            for split in ("validation", "test"):
                ds[split] = middle_windows(ds[split], d.text_column, d.max_eval_tokens, tokenizer)
            notes["eval tokens per split (max)"] = d.max_eval_tokens
        return Data(ds, GenerationInfo(format=fmt), notes)

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        """Token ids and labels of a batch of rows; with ``data.packing`` the examples packed into rows
        (:func:`causal_lm.pack_examples`, within each ``datasets.map`` batch of 1,000 rows)."""
        encoded = self._encode_examples(batch)
        if self.cfg.data.packing and self.info.format != "text":
            return causal_lm.pack_examples(encoded, self.cfg.data.max_length)
        return encoded

    def _encode_examples(self, batch: dict[str, list]) -> dict[str, list]:
        d, tok, fmt = self.cfg.data, self.tokenizer, self.info.format
        try:
            if fmt == "text":
                return causal_lm.pack_texts(tok, batch[d.text_column], d.block_size)
            if fmt == "prompt_response":
                prompts = [p or "" for p in batch[d.prompt_column]]
                if d.use_chat_template:
                    convs = [[{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                             for p, r in zip(prompts, batch[d.response_column], strict=True)]
                    return causal_lm.encode_chat(tok, convs, d.max_length)
                return causal_lm.encode_prompt_response(tok, prompts, batch[d.response_column], d.max_length)
            return causal_lm.encode_chat(tok, batch[d.messages_column], d.max_length)
        except ValueError as err:  # the data does not fit the tokenizer (no chat template, ...): say which data
            raise DataError(f"{d.source}: {err}") from err

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return causal_lm.collate_causal(features, self.tokenizer.pad_token_id)

    def loss_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return causal_lm.count_targets(batch)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
             num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        return causal_lm.causal_lm_loss(model, batch, num_items_in_batch)

    # ------------------------------------------------------------------ model
    def build_model(self, info: DataInfo) -> None:
        self.model, self.tokenizer = causal_lm.load_causal_lm(self.cfg.model.name, model=self.cfg.model)

    def callbacks(self) -> list[Callback]:
        lora.check_trainable(self.cfg)
        # BeforeAfter first: its baseline and "untuned" samples are the base model's, before LoRA wraps it.
        found: list[Callback] = [BeforeAfter()]
        if self.cfg.train.lora:
            found.append(LoraAdapters(self.cfg.lora, task_type="CAUSAL_LM"))
        return found

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model, batch):
        nll, n = causal_lm.token_nll(model, batch)
        return {"nll_sum": nll.float(), "n_tokens": n}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        return compute("perplexity", nll_sum=outputs["nll_sum"], n_tokens=outputs["n_tokens"])

    # ------------------------------------------------------------------ inference
    def decoding(self, **options: Any) -> tuple[GenerationGenerateConfig, dict[str, Any]]:
        """``cfg.generate`` with ``options`` on top (checked), and the call-only options (:data:`CALL_OPTIONS`).

        An unknown option raises a :class:`UsageError` listing the known ones; ``stop`` may be one string.
        """
        known = {f.name for f in dataclasses.fields(self.cfg.generate) if f.name != "batch_size"} | set(CALL_OPTIONS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"Unknown generation option(s) {unknown}; known: {', '.join(sorted(known))}.")
        call = {k: options.pop(k) for k in CALL_OPTIONS if k in options}
        if isinstance(options.get("stop"), str):
            options["stop"] = [options["stop"]]
        return self.cfg.generate.replace(**options), call

    def continue_prompts(self, model: Any, prompts: list[Any], gen: GenerationGenerateConfig,
                         batch_size: int | None = None, **call: Any) -> list[list[str]]:
        """``gen.num_return_sequences`` continuations of each prompt by ``model`` (:func:`causal_lm.generate`)."""
        return causal_lm.generate(model, self.tokenizer, prompts, batch_size=batch_size or gen.batch_size, gen=gen,
                                  stop=gen.stop, seed=gen.seed, chat_template=gen.chat_template, **call)

    def predict(self, inputs: list[Any], batch_size: int | None = None, **kwargs: Any) -> list[Any]:
        """The continuation of each prompt (a string; a list of strings when num_return_sequences > 1).

        Options (default: the run's ``generate.*`` config): max_new_tokens, do_sample, temperature, top_k,
        top_p, repetition_penalty, no_repeat_ngram_size, num_return_sequences, num_beams, stop, seed,
        chat_template, and for this call only return_full_text, max_prompt_tokens. A prompt may also be a list
        of chat messages.
        """
        gen, call = self.decoding(**kwargs)
        outs = self.continue_prompts(self.model, inputs, gen, batch_size, **call)
        return [o[0] for o in outs] if gen.num_return_sequences == 1 else outs

    def stream(self, prompt: Any, **kwargs: Any) -> Iterator[str]:
        """Yield the continuation of one prompt as it is generated (see :func:`causal_lm.stream_generate`)."""
        gen, _call = self.decoding(**kwargs)
        return causal_lm.stream_generate(self.model, self.tokenizer, prompt, gen=gen, stop=gen.stop, seed=gen.seed,
                                         chat_template=gen.chat_template)

    def stream_batch(self, prompts: list[Any], on_text: Callable[[int, str], None],
                     cancelled: Callable[[], bool] | None = None, **kwargs: Any) -> list[str]:
        """Continue ``prompts`` in one batched generation, calling ``on_text(i, piece)`` as prompt ``i``'s text
        grows (``nlpkit serve`` streams concurrent requests this way); returns the texts :meth:`predict` gives
        (see :func:`causal_lm.stream_generate_batch`). ``cancelled()`` stops the generation."""
        gen, _call = self.decoding(**kwargs)
        return causal_lm.stream_generate_batch(self.model, self.tokenizer, prompts, on_text=on_text, gen=gen,
                                               stop=gen.stop, seed=gen.seed, chat_template=gen.chat_template,
                                               cancelled=cancelled)

    def export_spec(self) -> Any:
        """``nlpkit export``: the core's generator graphs (KV-cache decoding step), checked by
        the greedy outputs on a few texts (:func:`nlpkit.onnx_generation.generator_export_spec`)."""
        from nlpkit.onnx_generation import generator_export_spec

        return generator_export_spec(
            self.model, ["Once upon a time", "a gripping, beautifully shot film", "dull and far too long", "ok"])

    def build_demo(self, pipe: Any) -> Any:
        """``nlpkit demo``: a prompt -> its continuation, streamed (:mod:`nlpkit.plugins.generation.demo`)."""
        from nlpkit.plugins.generation.demo import build_demo

        return build_demo(pipe)

    def serve_routes(self, server: Any) -> Any:
        """``nlpkit serve``: OpenAI's ``/v1/completions`` and ``/v1/chat/completions``, streaming included
        (:mod:`nlpkit.plugins.generation.serve`)."""
        from nlpkit.plugins.generation.serve import routes

        return routes(server)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (the LoRA adapter, or with ``lora.merge`` the merged plain model) + tokenizer."""
        if hasattr(self.model, "peft_config") and self.cfg.lora.merge:
            self.model = causal_lm.merge_lora(self.model)
            state_dict = None
        super().save(directory, state_dict=state_dict)

    # ------------------------------------------------------------------ report and command line
    def report_extras(self, run_dir: Path, results: RunResults) -> list[tuple[str, str]]:
        return report_sections(results, self.cfg.generate)

    @classmethod
    def add_commands(cls, subparsers: argparse._SubParsersAction) -> None:
        """``nlpkit generate``: continue prompts with a generation run or any causal LM."""
        add_generate_command(subparsers)
