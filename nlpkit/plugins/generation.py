"""Generation: fine-tune a causal language model (full or LoRA); perplexity and controllable generation.

Data: plain text packed into blocks of ``data.block_size`` tokens (EOS between documents), or per-example
instruction data (``prompt``/``response`` columns, or a ``messages`` list rendered with the tokenizer's chat
template) with the loss on response tokens only. The reusable pieces live in :mod:`nlpkit.causal_lm`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from nlpkit import causal_lm
from nlpkit.config import DataConfig, GenerateConfig, RunConfig, TrainConfig, opt
from nlpkit.data import DataError, check_columns, drop_empty_texts, load_splits
from nlpkit.metrics import compute
from nlpkit.modeling import resolve_model
from nlpkit.registry import register_task
from nlpkit.report import md_table
from nlpkit.task import TASK_FILE, Task

logger = logging.getLogger("nlpkit.generation")

FORMATS = ("auto", "text", "prompt_response", "chat")


@dataclass
class GenerationDataConfig(DataConfig):
    format: str = opt("auto", "How rows become training examples: `text` (tokenize, pack into blocks of "
                              "block_size, EOS between documents), `prompt_response` (loss on the response only), "
                              "`chat` (a messages list in the tokenizer's chat template, loss on assistant "
                              "replies), or `auto` (chat if there is a messages column, prompt_response if prompt "
                              "and response columns, else text).")
    block_size: int = opt(256, "Tokens per packed block (format=text).")
    prompt_column: str = opt("prompt", "Prompt column (format=prompt_response).")
    response_column: str = opt("response", "Response column (format=prompt_response).")
    messages_column: str = opt("messages", "Column with a list of {role, content} messages (format=chat).")
    use_chat_template: bool = opt(False, "format=prompt_response: render each pair as a user/assistant chat "
                                         "with the tokenizer's chat template.")
    max_eval_tokens: Optional[int] = opt(None, "format=text: score at most this many tokens of each validation/"
                                               "test split, as an equal window from the middle of every "
                                               "held-out document (all held-out plays count; faster on CPU).")


@dataclass
class GenerationTrainConfig(TrainConfig):
    lora: bool = opt(False, "Train LoRA adapters (peft) instead of all weights; see the lora.* options.")


@dataclass
class LoraOptions:
    r: int = opt(16, "LoRA rank.")
    alpha: int = opt(32, "LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = opt(0.05, "Dropout on the LoRA branch.")
    target_modules: list[str] = opt(help="Layers that get adapters: module names (q_proj, v_proj, ...) or "
                                         "[all-linear].", factory=lambda: ["all-linear"])
    merge: bool = opt(False, "Fold the adapters into the base weights and save a plain model (else the run "
                             "saves only the adapter, loaded on top of the base model).")


@dataclass
class GenerationGenerateConfig(GenerateConfig):
    stop: list[str] = opt(help="Stop strings: output ends just before the first one.", factory=list)
    seed: Optional[int] = opt(None, "Seed for sampling (same prompts and batch size -> same outputs).")
    batch_size: int = opt(16, "Prompts generated together (left-padded, sorted by length).")
    chat_template: bool = opt(False, "Wrap each prompt as a user message in the tokenizer's chat template.")


@dataclass
class GenerationConfig(RunConfig):
    task: str = opt("generation", "Task name (set by the launch script).")
    model: str = opt("smollm2-135m", "Causal LM to fine-tune: a catalog name, a hub id (e.g. gpt2), a local "
                                     "folder, or a previous run.")
    attn_implementation: Optional[str] = opt(None, "Attention kernel (sdpa, eager, flash_attention_2; default: "
                                                   "transformers' choice).")
    sample_prompts: list[str] = opt(help="Prompts continued before and after training for the report.",
                                    factory=lambda: ["ROMEO.\n", "KING.\nMy lords,", "To be, or not to be",
                                                     "Once upon a time"])
    data: GenerationDataConfig = opt(help="Data options.", factory=lambda: GenerationDataConfig(
        source="shakespeare", split_by="play", test_size=3, validation_size=2, max_length=512, block_size=256,
        max_eval_tokens=4096))
    # Sized for a 2-core CPU (about 15-25 s per 1k-token update): 50 updates of 4 x 256 tokens at a high
    # learning rate adapt the model to Shakespeare's style within the 30-minute budget.
    train: GenerationTrainConfig = opt(help="Training options.", factory=lambda: GenerationTrainConfig(
        lr=1e-4, max_steps=50, batch_size=4, eval_batch_size=4, warmup_ratio=0.1, scheduler="cosine",
        log_every=5, metric_for_best="perplexity", greater_is_better=False))
    lora: LoraOptions = opt(help="LoRA options (with train.lora=true).", factory=LoraOptions)
    generate: GenerationGenerateConfig = opt(help="Decoding options for samples and the pipeline.",
                                             factory=lambda: GenerationGenerateConfig(max_new_tokens=48))


_PREDICT_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty",
                    "no_repeat_ngram_size",
                    "num_return_sequences", "num_beams", "stop", "seed", "return_full_text", "chat_template",
                    "max_prompt_tokens")


@register_task("generation")
class GenerationTask(Task):
    """Causal language modelling (full or LoRA fine-tuning). Metrics: perplexity, sample continuations."""

    Config = GenerationConfig
    main_metric = "perplexity"
    greater_is_better = False
    hub_task_type = "text-generation"
    usage_example = "Once upon a time"
    cfg: GenerationConfig

    def __init__(self, cfg: GenerationConfig):
        super().__init__(cfg)
        if cfg.data.format not in FORMATS:
            raise DataError(f"data.format={cfg.data.format!r}: expected one of {', '.join(FORMATS)}.")
        self.format = cfg.data.format
        self._raw: Any = None  # loaded once per run (run() evaluates the untuned model before training)
        self._keep_model = False
        self.tokens_seen = 0

    # ------------------------------------------------------------------ data
    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            path = resolve_model(self.cfg.model)
            if causal_lm.is_adapter_dir(path) and not (Path(path) / "tokenizer_config.json").exists():
                path = self._adapter_base(path) or path
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            causal_lm.ensure_pad_token(self.tokenizer)
        return self.tokenizer

    def load_data(self):
        if self._raw is not None:
            return self._raw
        d = self.cfg.data
        ds, _meta = load_splits(d, self.cfg.seed)
        cols = ds["train"].column_names
        if self.format == "auto":
            if d.messages_column in cols:
                self.format = "chat"
            elif d.prompt_column in cols and d.response_column in cols:
                self.format = "prompt_response"
            else:
                self.format = "text"
        if self.format == "text":
            check_columns(ds, [d.text_column], d.source, "data.text_column")
            dropped = drop_empty_texts(ds, [d.text_column], d.empty_texts, d.source)
            keep = [d.text_column]
        elif self.format == "prompt_response":
            check_columns(ds, [d.prompt_column, d.response_column], d.source, "data.prompt_column")
            dropped = drop_empty_texts(ds, [d.response_column], d.empty_texts, d.source)
            keep = [d.prompt_column, d.response_column]
        else:
            check_columns(ds, [d.messages_column], d.source, "data.messages_column")
            self._check_messages(ds)
            dropped = {}
            keep = [d.messages_column]
        if any(dropped.values()):
            self.data_notes["empty texts skipped"] = dropped
        self.data_notes["format"] = self.format
        if d.split_by and d.split_by in cols:
            held = {s: sorted(set(ds[s][d.split_by])) for s in ("validation", "test")}
            self.data_notes["held-out " + d.split_by] = held
        ds = ds.remove_columns([c for c in cols if c not in keep])
        if self.format == "text" and d.max_eval_tokens:
            for split in ("validation", "test"):
                ds[split] = self._middle_windows(ds[split], d.max_eval_tokens)
            self.data_notes["eval tokens per split (max)"] = d.max_eval_tokens
        self._raw = ds
        return ds

    def _check_messages(self, ds: Any) -> None:
        col = self.cfg.data.messages_column
        for split, part in ds.items():
            for row, conv in enumerate(part[col]):
                ok = isinstance(conv, list) and conv and all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in conv)
                if not ok:
                    raise DataError(f"{self.cfg.data.source} ({split} split) row {row}: column {col!r} must be a "
                                    f"non-empty list of {{'role': str, 'content': str}} messages, got {conv!r:.120}.")
                if not any(m["role"] == "assistant" for m in conv):
                    raise DataError(f"{self.cfg.data.source} ({split} split) row {row}: the conversation has no "
                                    f"assistant message, so nothing would be learned from it.")

    def _middle_windows(self, split: Any, budget: int) -> Any:
        """Each document cut to a window of ``budget / n_docs`` tokens from its middle (exact, via offsets)."""
        from datasets import Dataset

        col = self.cfg.data.text_column
        texts = split[col]
        if not texts:
            return split
        per_doc = max(2, budget // len(texts))
        tok = self._tokenizer()
        out = []
        for text in texts:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            offsets = enc["offset_mapping"]
            if len(offsets) <= per_doc:
                out.append(text)
                continue
            start = (len(offsets) - per_doc) // 2
            out.append(text[offsets[start][0]: offsets[start + per_doc - 1][1]])
        return Dataset.from_dict({col: out})

    def encode(self, batch: dict[str, list]) -> dict[str, list]:
        d, tok = self.cfg.data, self._tokenizer()
        try:
            if self.format == "text":
                return causal_lm.pack_texts(tok, batch[d.text_column], d.block_size)
            if self.format == "prompt_response":
                prompts = [p or "" for p in batch[d.prompt_column]]
                if d.use_chat_template:
                    convs = [[{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                             for p, r in zip(prompts, batch[d.response_column], strict=True)]
                    return causal_lm.encode_chat(tok, convs, d.max_length)
                return causal_lm.encode_prompt_response(tok, prompts, batch[d.response_column], d.max_length)
            return causal_lm.encode_chat(tok, batch[d.messages_column], d.max_length)
        except ValueError as err:
            raise DataError(f"{d.source}: {err}") from err

    def collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return causal_lm.collate_causal(features, self._tokenizer().pad_token_id)

    # ------------------------------------------------------------------ model
    def _adapter_base(self, path: str) -> str | None:
        """For a saved adapter whose recorded base path is gone: the base model named in its run config."""
        recorded = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if recorded and Path(recorded).exists():
            return None
        descriptor = Path(path) / TASK_FILE
        if descriptor.exists():
            return json.loads(descriptor.read_text())["config"].get("model")
        return None

    def build_model(self) -> None:
        if self._keep_model and self.model is not None:
            return
        path = resolve_model(self.cfg.model)
        base = self._adapter_base(path) if causal_lm.is_adapter_dir(path) else None
        self.model, self.tokenizer = causal_lm.load_causal_lm(path, attn_implementation=self.cfg.attn_implementation,
                                                              base_model=base)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.tokens_seen += int(batch["attention_mask"].sum())
        return model(**batch).loss

    # ------------------------------------------------------------------ evaluation
    def eval_step(self, model, batch):
        nll, n = causal_lm.token_nll(model, batch)
        return {"nll_sum": nll.float(), "n_tokens": n}

    def compute_metrics(self, outputs: dict[str, list]) -> dict[str, Any]:
        return compute("perplexity", nll_sum=outputs["nll_sum"], n_tokens=outputs["n_tokens"])

    # ------------------------------------------------------------------ inference
    def generation_options(self, **overrides: Any) -> dict[str, Any]:
        """The decoding options: ``cfg.generate`` with ``overrides`` on top (unknown names raise TypeError)."""
        unknown = sorted(set(overrides) - set(_PREDICT_OPTIONS))
        if unknown:
            raise TypeError(f"Unknown generation option(s) {unknown}; known: {', '.join(_PREDICT_OPTIONS)}.")
        g = self.cfg.generate
        opts: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "do_sample": g.do_sample,
                                "temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p,
                                "repetition_penalty": g.repetition_penalty,
                                "no_repeat_ngram_size": g.no_repeat_ngram_size,
                                "num_return_sequences": g.num_return_sequences, "num_beams": g.num_beams,
                                "stop": list(g.stop), "seed": g.seed, "chat_template": g.chat_template}
        opts.update(overrides)
        if isinstance(opts.get("stop"), str):
            opts["stop"] = [opts["stop"]]
        return opts

    def predict(self, inputs: list[Any], batch_size: int | None = None, **kwargs: Any) -> list[Any]:
        """The continuation of each prompt (a string; a list of strings when num_return_sequences > 1).

        Options (default: the run's ``generate.*`` config): max_new_tokens, do_sample, temperature, top_k,
        top_p, repetition_penalty, no_repeat_ngram_size, num_return_sequences, num_beams, stop, seed,
        return_full_text, chat_template, max_prompt_tokens. A prompt may also be a list of chat messages.
        """
        opts = self.generation_options(**kwargs)
        outs = causal_lm.generate(self.model, self.tokenizer, inputs,
                                  batch_size=batch_size or self.cfg.generate.batch_size, **opts)
        return [o[0] if opts["num_return_sequences"] == 1 else o for o in outs]

    def stream(self, prompt: Any, **kwargs: Any):
        """Yield the continuation of one prompt as it is generated (see :func:`causal_lm.stream_generate`)."""
        opts = self.generation_options(**kwargs)
        for key in ("return_full_text", "max_prompt_tokens"):
            opts.pop(key, None)
        return causal_lm.stream_generate(self.model, self.tokenizer, prompt, **opts)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (the LoRA adapter, or with ``lora.merge`` the merged plain model) + tokenizer."""
        if hasattr(self.model, "peft_config") and self.cfg.lora.merge:
            self.model = causal_lm.merge_lora(self.model)  # in place: later samples use the same weights
            state_dict = None
        super().save(directory, state_dict=state_dict)

    # ------------------------------------------------------------------ run
    def _samples(self, accelerator: Any) -> list[str]:
        if not self.cfg.sample_prompts or not accelerator.is_main_process:
            return []
        model = accelerator.unwrap_model(self.model)
        opts = self.generation_options()
        opts["num_return_sequences"] = 1
        with accelerator.autocast():
            outs = causal_lm.generate(model, self.tokenizer, list(self.cfg.sample_prompts),
                                      batch_size=self.cfg.generate.batch_size, **opts)
        return [o[0] for o in outs]

    def run(self, accelerator: Any, run_dir: Path) -> dict[str, Any]:
        """Score the untuned model on validation/test, train with the shared loop, compare before/after."""
        from accelerate.utils import set_seed

        from nlpkit.training import encode_splits, eval_loader, evaluate_loader, train_and_evaluate

        set_seed(self.cfg.seed)
        with accelerator.main_process_first():
            raw = self.load_data()
            self.build_model()
        self._keep_model = True  # train_and_evaluate reuses this model and data
        self.model.to(accelerator.device)
        encoded = encode_splits(self, raw, accelerator)
        baseline: dict[str, Any] = {}
        for split in ("validation", "test"):
            loader = accelerator.prepare(eval_loader(self, encoded[split], self.cfg.train.eval_batch_size))
            with accelerator.autocast():
                baseline[split], _ = evaluate_loader(self, self.model, loader, accelerator,
                                                     desc=f"Untuned model on {split}")
            accelerator.print(f"untuned {split} perplexity: {baseline[split]['perplexity']:.3f}")
        before = self._samples(accelerator)

        if self.cfg.train.lora:
            lo = self.cfg.lora
            self.model = causal_lm.apply_lora(self.model, r=lo.r, alpha=lo.alpha, dropout=lo.dropout,
                                              target_modules=lo.target_modules)
            if self.cfg.train.gradient_checkpointing:
                # frozen embeddings: checkpointed blocks need an input that requires grad to backprop to LoRA
                self.model.enable_input_require_grads()
            trainable, total = self.model.get_nb_trainable_parameters()
            self.data_notes["trainable parameters"] = f"{trainable:,} of {total:,} (LoRA)"

        self.tokens_seen = 0
        results = train_and_evaluate(self, accelerator, run_dir)
        tokens = accelerator.reduce(torch.tensor(self.tokens_seen, device=accelerator.device), "sum").item()
        training = results.get("training", {})
        training["tokens"] = int(tokens)
        training["tokens_per_s"] = round(tokens / max(training.get("runtime_s", 0.0), 1e-9), 1)
        after = self._samples(accelerator) if results.get("test") else []
        extra: dict[str, Any] = {"baseline": {s: m for s, m in baseline.items()}}
        if results.get("test"):
            summary = {}
            for split in ("validation", "test"):
                b, a = baseline[split]["perplexity"], results[split]["perplexity"]
                summary[split] = {"untuned": b, "fine_tuned": a,
                                  "relative_drop": (b - a) / b if math.isfinite(b) and b > 0 else None}
            extra["perplexity_before_after"] = summary
        extra["samples"] = [{"prompt": p, "untuned": b, "fine_tuned": a}
                            for p, b, a in zip(self.cfg.sample_prompts, before, after or [""] * len(before),
                                               strict=False)]
        results["extra"] = extra
        return results

    # ------------------------------------------------------------------ report
    def report_extras(self, run_dir: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
        extra = results.get("extra") or {}
        sections = []
        summary = extra.get("perplexity_before_after")
        if summary:
            rows = [[split, v["untuned"], v["fine_tuned"],
                     f"{100 * v['relative_drop']:.1f}%" if v["relative_drop"] is not None else "n/a"]
                    for split, v in summary.items()]
            sections.append(("Perplexity before and after fine-tuning",
                             md_table(rows, ["split", "untuned", "fine-tuned", "relative drop"])))
        if extra.get("samples"):
            g = self.generation_options()
            how = ("sampled" if g["do_sample"] else "greedy") + f", max_new_tokens={g['max_new_tokens']}"
            blocks = [f"Decoding: {how}.", ""]
            for s in extra["samples"]:
                blocks += [f"**Prompt:** `{s['prompt']!r}`", "", "Untuned:", "", "```text", s["prompt"] + s["untuned"],
                           "```", "", "Fine-tuned:", "", "```text", s["prompt"] + s["fine_tuned"], "```", ""]
            sections.append(("Sample continuations (before vs after)", "\n".join(blocks)))
        return sections


def cli_generate(args: Any) -> None:
    """``nlpkit generate RUN_OR_MODEL PROMPT [options]``: print continuations (``--stream``: as they come)."""
    import sys

    import nlpkit
    from nlpkit.cli import UserError

    opts: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "seed": args.seed,
                            "num_return_sequences": args.num_return_sequences,
                            "repetition_penalty": args.repetition_penalty,
                            "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.do_sample or args.temperature is not None or args.top_p is not None:
        opts.update(do_sample=True, temperature=args.temperature or 1.0, top_p=args.top_p or 1.0,
                    top_k=args.top_k if args.top_k is not None else 50)
    if args.stop:
        opts["stop"] = [s.encode().decode("unicode_escape") for s in args.stop]  # "\n" typed on a shell
    if args.chat:
        opts["chat_template"] = True
    opts = {k: v for k, v in opts.items() if v is not None}
    prompts = args.prompts or [sys.stdin.read()]
    if args.stream and (len(prompts) != 1 or opts["num_return_sequences"] != 1):
        raise UserError("--stream shows one prompt and one sequence at a time.")
    pipe = nlpkit.pipeline("generation", model=args.model, device=args.device)
    try:
        if args.stream:
            if not args.chat:
                print(prompts[0], end="", flush=True)
            for piece in pipe.task.stream(prompts[0], **opts):
                print(piece, end="", flush=True)
            print()
            return
        outputs = pipe(prompts, **opts)
    except (ValueError, TypeError) as err:  # bad decoding options: one clear line, no traceback
        raise UserError(str(err)) from err
    for prompt, out in zip(prompts, outputs, strict=True):
        texts = [out] if isinstance(out, str) else out
        for text in texts:
            print(text if args.chat else prompt + text)
            if len(prompts) > 1 or len(texts) > 1:
                print("-" * 40)
