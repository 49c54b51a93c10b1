"""Reusable causal-LM pieces: loading, text preparation, perplexity and batched generation.

Used by the ``generation`` task and by any task that runs a decoder-only model (e.g. decoder-only
translation). Everything here is a plain function over a transformers model + tokenizer::

    from nlpkit.causal_lm import load_causal_lm, encode_prompt_response, collate_causal, generate

    model, tok = load_causal_lm("smollm2-135m")                   # catalog name, run folder, path or hub id
    feats = encode_prompt_response(tok, ["Translate: hello\\nFrench:"], [" bonjour"], max_length=128)
    batch = collate_causal([{k: v[0] for k, v in feats.items()}], tok.pad_token_id)
    loss = model(**batch).loss                                       # loss on " bonjour" + EOS only
    generate(model, tok, ["Translate: cat\\nFrench:"], max_new_tokens=10, stop=["\\n"])  # [[" chat"]]

Conventions:

* Encoders return plain lists (``datasets.map`` friendly): ``input_ids`` and, where only part of the text is
  scored, ``labels`` with ``-100`` on unscored tokens (prompt, chat scaffolding, padding).
* Training batches are right-padded (:func:`collate_causal`); generation batches are left-padded so every
  prompt's last token sits in the last column and new tokens line up (:func:`generate`).
* :func:`generate` sorts prompts by token length before batching, which keeps padding small; position ids
  are computed from the attention mask, so a prompt's greedy output does not depend on its batch mates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nlpkit import loader, lora
from nlpkit.config import GenerateConfig, LoraOptions, ModelConfig
from nlpkit.errors import ConfigError, DataError, UsageError
from nlpkit.inference import pad, run_sorted
from nlpkit.lora import is_adapter_dir

logger = logging.getLogger("nlpkit.causal_lm")

IGNORE_INDEX = -100  # label value that the loss (and perplexity) skips

__all__ = [
    "IGNORE_INDEX",
    "apply_lora",
    "causal_lm_loss",
    "collate_causal",
    "count_targets",
    "encode_chat",
    "encode_prompt_response",
    "ensure_pad_token",
    "generate",
    "generation_config",
    "is_adapter_dir",
    "load_causal_lm",
    "load_tokenizer",
    "merge_lora",
    "model_inputs",
    "pack_examples",
    "pack_texts",
    "stream_generate",
    "stream_generate_batch",
    "token_nll",
    "truncate_at_stop",
]


# --------------------------------------------------------------------------------------------- loading


def ensure_pad_token(tokenizer: Any, model: Any = None) -> None:
    """Give ``tokenizer`` a pad token if it has none (reusing EOS, the usual choice for causal LMs).

    Padding positions are always masked out by the attention mask and labelled ``-100``, so reusing EOS
    never teaches the model to stop early. ``model.config``/``generation_config`` get the same id.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
    if model is not None:
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tokenizer.pad_token_id


def _tokenizer_folder(path: str, base_model: str | None) -> str:
    """Where the tokenizer of the model at ``path`` is: its own folder, or an adapter's base model if it has none."""
    if (Path(path) / "tokenizer_config.json").exists():
        return path
    return loader.config_folder(path, base_model)


def load_tokenizer(name_or_path: str, *, base_model: str | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer :func:`load_causal_lm` returns for ``name_or_path`` (pad token included), without weights."""
    from transformers import AutoTokenizer

    from nlpkit.modeling import pretrained, resolve_model

    tokenizer = pretrained(AutoTokenizer, _tokenizer_folder(resolve_model(name_or_path), base_model),
                           trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer)
    return tokenizer


def load_causal_lm(name_or_path: str, *, dtype: torch.dtype | str | None = None,
                   attn_implementation: str | None = None, base_model: str | None = None,
                   device: str | torch.device | None = None, model: ModelConfig | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a causal LM, ready for training and batched generation.

    ``name_or_path``: a catalog name (``smollm2-135m``), an nlpkit run folder, a local model folder, a PEFT
    adapter folder (its base model is loaded first; ``base_model`` names it when the recorded path is gone),
    a hub id, or an ``nlpkit export`` folder (run on ONNX Runtime, CPU). The tokenizer always has a pad token
    (see :func:`ensure_pad_token`).
    ``model``: the ``model.*`` config section (dtype, quantization, trust_remote_code, revision, attention
    kernel; see :func:`nlpkit.modeling.load_kwargs`); ``dtype`` and ``attn_implementation``, when given, win over
    it. The default dtype is float32 (exact, and what CPU training needs); mixed precision comes from accelerate.
    """
    from transformers import AutoModelForCausalLM

    from nlpkit.modeling import load_kwargs, resolve_model

    path = resolve_model(name_or_path)
    options = load_kwargs(model) if model is not None else {"dtype": torch.float32}
    if dtype is not None:
        options["dtype"] = dtype
    if attn_implementation:
        options["attn_implementation"] = attn_implementation
    trust = bool(options.get("trust_remote_code", False))
    tokenizer = load_tokenizer(path, base_model=base_model, trust_remote_code=trust)
    try:
        # weights, an adapter on its base, or an export; a pad token new to the tokenizer resizes the
        # embeddings of the PyTorch weights before an adapter goes on top
        lm = loader.load(AutoModelForCausalLM, path, model, base_model=base_model,
                         on_weights=lambda weights: ensure_pad_token(tokenizer, weights),
                         **{k: v for k, v in options.items() if k != "trust_remote_code"})
    except ValueError as err:  # e.g. an encoder-only checkpoint: say what was expected
        raise ConfigError(f"{name_or_path} is not a causal language model ({err}). Use a decoder-only "
                          f"model (Llama, GPT-2, SmolLM, ...).") from err
    if device is not None:
        lm.to(device)
    return lm, tokenizer


def apply_lora(model: Any, r: int = 8, alpha: int = 16, dropout: float = 0.05,
               target_modules: Sequence[str] | str = "all-linear", task_type: str = "CAUSAL_LM") -> Any:
    """Wrap ``model`` with fresh LoRA adapters (``peft``); only the adapter weights stay trainable.

    A keyword form of :func:`nlpkit.lora.apply_lora` (which takes the ``lora.*`` section); ``task_type`` is
    peft's ``TaskType`` name (``CAUSAL_LM``, ``SEQ_2_SEQ_LM``, ``SEQ_CLS``).
    """
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    return lora.apply_lora(model, LoraOptions(r=r, alpha=alpha, dropout=dropout, target_modules=targets),
                           task_type)


def merge_lora(model_or_dir: Any, output_dir: str | Path | None = None, base_model: str | None = None) -> Any:
    """Fold LoRA adapters into the base weights and return a plain transformers model.

    ``model_or_dir`` is a ``PeftModel`` or a saved adapter folder (run folder / ``model/``). With
    ``output_dir`` the merged model (and the tokenizer, when loaded from a folder) is saved there.
    """
    tokenizer = None
    model = model_or_dir
    if isinstance(model_or_dir, (str, Path)):
        model, tokenizer = load_causal_lm(str(model_or_dir), base_model=base_model)
    if not lora.is_peft_model(model):
        raise UsageError("merge_lora needs a PEFT (LoRA) model or adapter folder; this one has no adapters.")
    merged = lora.merge_lora(model)
    if output_dir is not None:
        merged.save_pretrained(output_dir, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(output_dir)
    return merged


# --------------------------------------------------------------------------------------------- encoding


def pack_texts(tokenizer: Any, texts: Sequence[str], block_size: int, *, add_eos: bool = True,
               keep_remainder: bool = True) -> dict[str, list[list[int]]]:
    """Tokenize ``texts``, join them with EOS between documents and cut into blocks of ``block_size``.

    The standard causal-LM preparation (``run_clm``): every token is scored, no padding is wasted. The last,
    shorter block is kept when ``keep_remainder`` (so a perplexity covers every token) if it has at least two
    tokens. Returns ``{"input_ids": [[...], ...]}``.
    """
    if block_size < 2:
        raise ConfigError(f"data.block_size must be at least 2, not {block_size}.")
    eos = tokenizer.eos_token_id
    # verbose=False: whole documents are longer than model_max_length on purpose (they are cut below).
    encoded = tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        if add_eos and eos is not None and (not ids or ids[-1] != eos):
            stream.append(eos)
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    if blocks and (len(blocks[-1]) < block_size) and not (keep_remainder and len(blocks[-1]) >= 2):
        blocks.pop()
    return {"input_ids": blocks}


def _fit(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Cut a (prompt, response) pair to ``max_length``: the response keeps at least half of the room.

    The prompt loses tokens from its start (its end, next to the response, matters most), the response from
    its end.
    """
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    keep_response = min(len(response), max(max_length // 2, max_length - len(prompt)))
    response = response[:keep_response]
    prompt = prompt[len(prompt) - (max_length - keep_response):] if max_length > keep_response else []
    return prompt, response


def encode_prompt_response(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_length: int,
                           *, add_eos: bool = True) -> dict[str, list[list[int]]]:
    """Token ids for ``prompt + response (+ EOS)`` with labels on the response only (``-100`` on the prompt).

    Prompt and response are tokenized separately, so the prompt's tokens are exactly those :func:`generate`
    feeds the model at inference. Put any separator (space, newline) in the prompt or the response text.
    """
    if len(prompts) != len(responses):
        raise UsageError(f"{len(prompts)} prompts but {len(responses)} responses.")
    p_ids = tokenizer(list(prompts), add_special_tokens=True, verbose=False)["input_ids"]
    r_ids = tokenizer(list(responses), add_special_tokens=False, verbose=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for p, r in zip(p_ids, r_ids, strict=True):
        r = list(r) + ([eos] if add_eos and eos is not None else [])
        p, r = _fit(list(p), r, max_length)
        out["input_ids"].append(p + r)
        out["labels"].append([IGNORE_INDEX] * len(p) + r)
    return out


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def encode_chat(tokenizer: Any, conversations: Sequence[Sequence[dict[str, str]]], max_length: int,
                *, train_on: str = "assistant") -> dict[str, list[list[int]]]:
    """Render conversations with the tokenizer's chat template; labels only on assistant replies.

    Each conversation is a list of ``{"role": ..., "content": ...}``. For every assistant message the text
    between "history + generation prompt" and "history + this reply" is scored (the reply and its end-of-turn
    token); system/user turns and template scaffolding get ``-100``. Conversations longer than ``max_length``
    are cut at the end. Needs a fast tokenizer (character offsets) and a prefix-stable template.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError("The tokenizer has no chat template; use prompt/response data or a chat model.")
    if train_on != "assistant":
        raise UsageError(f"train_on={train_on!r}: only 'assistant' is supported.")
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    for row, conv in enumerate(conversations):
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in conv]
        full = _render(tokenizer, messages, add_generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
            end = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
            if not full.startswith(start) or not full.startswith(end):
                raise DataError(f"Conversation {row}: the chat template does not render the history as a "
                                 f"prefix of the whole conversation, so reply tokens cannot be located.")
            spans.append((len(start), len(end)))
        if not spans:
            raise DataError(f"Conversation {row} has no assistant message to learn from.")
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        labels = [tok if any(a <= s < b for a, b in spans) else IGNORE_INDEX
                  for tok, (s, _e) in zip(ids, offsets, strict=True)]
        out["input_ids"].append(ids[:max_length])
        out["labels"].append(labels[:max_length])
    return out


def pack_examples(features: dict[str, list[list[int]]], capacity: int) -> dict[str, list[list[int]]]:
    """Pack encoded examples into rows of at most ``capacity`` tokens, each example keeping its own positions.

    First-fit decreasing: examples are taken longest first and each goes into the first row with room for it
    (a new row when none has), which fills rows to within a few tokens of ``capacity`` on instruction data.
    Every example's ``position_ids`` restart at 0 and its first label is ``-100``: transformers (4.45+) reads
    a reset of the position ids as the start of a new sequence and masks attention across it (sdpa, eager and
    flash attention; see :func:`collate_causal`), and no token is scored from the previous example's last token.
    An example longer than ``capacity`` gets a row of its own. Returns ``input_ids``, ``labels`` (on every token
    when ``features`` has none) and ``position_ids``, one entry per row.
    """
    if capacity < 2:
        raise ConfigError(f"data.max_length must be at least 2 to pack examples, not {capacity}.")
    ids_list = features["input_ids"]
    labels_list = features.get("labels") or ids_list
    rows: list[dict[str, list[int]]] = []
    free: list[int] = []  # room left in each row, in row order
    for i in sorted(range(len(ids_list)), key=lambda k: -len(ids_list[k])):
        ids = list(ids_list[i])
        if not ids:
            continue
        labels = [IGNORE_INDEX, *labels_list[i][1:]]
        target = next((r for r, room in enumerate(free) if room >= len(ids)), None)
        if target is None:
            rows.append({"input_ids": [], "labels": [], "position_ids": []})
            free.append(capacity)
            target = len(rows) - 1
        row = rows[target]
        row["input_ids"] += ids
        row["labels"] += labels
        row["position_ids"] += range(len(ids))
        free[target] -= len(ids)
    return {k: [r[k] for r in rows] for k in ("input_ids", "labels", "position_ids")}


def collate_causal(features: Sequence[dict[str, Any]], pad_token_id: int,
                   pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (and ``labels``) into a training/eval batch.

    Examples without ``labels`` are scored on every token (``labels = input_ids``). Padding is masked in
    ``attention_mask`` and labelled ``-100``.

    Packed rows (features with ``position_ids``, from :func:`pack_examples`) get no attention mask: the
    position ids say where each example starts, and transformers builds the block-diagonal causal mask from
    them (its packed-sequence detection only runs without a 2D mask and without a cache, see
    :func:`model_inputs`). A row's padding is one more "sequence" with positions from 0, so no real token
    attends to it, and it is labelled ``-100``.
    """
    width = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids, mask = pad([f["input_ids"] for f in features], pad_token_id, width=width)
    labels, _ = pad([f["input_ids"] if f.get("labels") is None else f["labels"] for f in features], IGNORE_INDEX,
                    width=width)
    if "position_ids" not in features[0]:
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    positions = torch.stack([torch.cat([torch.as_tensor(f["position_ids"], dtype=torch.long),
                                        torch.arange(width - len(f["position_ids"]), dtype=torch.long)])
                             for f in features])
    return {"input_ids": input_ids, "position_ids": positions, "labels": labels}


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The forward arguments of a training/eval batch: ids and either the attention mask or, for packed rows,
    the position ids. No cache: transformers only looks for packed sequences when there is none, and training
    does not need one."""
    inputs: dict[str, Any] = {"input_ids": batch["input_ids"], "use_cache": False}
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"]
    else:
        inputs["attention_mask"] = batch.get("attention_mask")
    return inputs


# --------------------------------------------------------------------------------------------- scoring


def _labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The batch's labels; without any, every non-padding token is scored."""
    labels = batch.get("labels")
    if labels is None:
        mask = batch.get("attention_mask")
        ids = batch["input_ids"]
        labels = ids if mask is None else ids.masked_fill(mask == 0, IGNORE_INDEX)
    return labels


def count_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Number of tokens a causal LM is scored on in ``batch``: ``labels[:, 1:] != -100`` (after the shift, so a
    row's first token never counts). What :meth:`nlpkit.task.Task.loss_items` returns for causal-LM tasks."""
    return (_labels(batch)[:, 1:] != IGNORE_INDEX).sum()


def causal_lm_loss(model: Any, batch: dict[str, torch.Tensor],
                   num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Next-token cross-entropy of ``batch`` (float32) over its scored tokens.

    Without ``num_items_in_batch``: the mean over this batch's scored tokens. With it: the summed loss divided
    by ``num_items_in_batch``, the scored tokens of a whole optimizer update (all micro-batches, all processes),
    so that gradient accumulation and data parallelism weigh every token the same (see
    :meth:`nlpkit.task.Task.loss_items`). Works on padded and on packed batches (:func:`model_inputs`).
    """
    logits = model(**model_inputs(batch)).logits
    target = _labels(batch)[:, 1:]
    summed = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE_INDEX,
                             reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = (target != IGNORE_INDEX).sum().clamp(min=1)
    return summed / num_items_in_batch


def token_nll(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: summed next-token negative log-likelihood (nats) and number of scored tokens.

    Token ``t`` is scored from positions ``< t`` where ``labels[t] != -100``. Summing (not averaging) makes a
    corpus perplexity ``exp(sum nll / sum tokens)`` exact for any batching, packing and number of processes.
    """
    labels = _labels(batch)
    logits = model(**model_inputs(batch)).logits
    target = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=IGNORE_INDEX,
                          reduction="none")
    scored = target != IGNORE_INDEX
    return (nll * scored).sum(dim=1), scored.sum(dim=1)


# --------------------------------------------------------------------------------------------- generation


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` cut before the first occurrence of any stop string; and whether one was found."""
    cut = len(text)
    for s in stop or ():
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut], cut < len(text)


def generation_config(model: Any, tokenizer: Any, gen: GenerateConfig | None = None, *,
                      stop: Sequence[str] | None = None, **options: Any) -> Any:
    """A ``transformers.GenerationConfig`` for ``model`` from ``gen`` (default: :class:`GenerateConfig`
    defaults) with ``options`` (its field names: ``max_new_tokens``, ``do_sample``, ...) on top.

    Built fresh rather than from the model's own, with sampling knobs cleared unless sampling (a checkpoint's
    generation config often sets a temperature that would otherwise warn on greedy decoding).
    """
    from transformers import GenerationConfig

    gen = gen or GenerateConfig()
    if options:
        gen = gen.replace(**options)
    base = getattr(model, "generation_config", None)
    eos = getattr(base, "eos_token_id", None) if base is not None else None
    gc = GenerationConfig(**gen.generate_kwargs(), pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
                          bos_token_id=tokenizer.bos_token_id)
    if not gen.do_sample:
        gc.temperature, gc.top_k, gc.top_p = None, None, None
    if stop:
        gc.stop_strings = [s for s in stop if s]
    return gc


def _prompt_ids(tokenizer: Any, prompts: Sequence[str | Sequence[dict[str, str]]],
                chat_template: bool = False) -> list[list[int]]:
    """Token ids of each prompt (chat messages / ``chat_template`` go through the tokenizer's template).

    An empty prompt starts from BOS (or EOS, the document separator) so the model still has a context.
    """
    texts: list[str] = []
    specials: list[bool] = []
    for i, p in enumerate(prompts):
        if isinstance(p, str) and not chat_template:
            texts.append(p)
            specials.append(True)
        elif isinstance(p, str) or isinstance(p, (list, tuple)):
            msgs = [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
            if getattr(tokenizer, "chat_template", None) is None:
                raise UsageError("Chat prompts need a tokenizer with a chat template.")
            texts.append(_render(tokenizer, msgs, add_generation_prompt=True))
            specials.append(False)  # the template writes its own special tokens
        else:
            raise UsageError(f"Prompt {i} is a {type(p).__name__}; expected a string or chat messages.")
    ids = [tokenizer(t, add_special_tokens=s, verbose=False)["input_ids"]
           for t, s in zip(texts, specials, strict=True)]
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [x if x else [start] for x in ids]


@torch.inference_mode()
def generate(model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[dict[str, str]]], *,
             batch_size: int = 16, gen: GenerateConfig | None = None, stop: Sequence[str] | None = None,
             seed: int | None = None, return_full_text: bool = False, chat_template: bool = False,
             max_prompt_tokens: int | None = None, progress: bool | None = None,
             **options: Any) -> list[list[str]]:
    """Continue every prompt; returns ``num_return_sequences`` texts per prompt, in input order.

    Decoding follows ``gen`` (a :class:`GenerateConfig`) with ``options`` (its field names) on top. Prompts go
    through the shared batched-inference path (:func:`nlpkit.inference.run_sorted`): sorted by token length,
    ``batch_size`` at a time, left-padded; greedy outputs equal one-prompt-at-a-time outputs. Each text stops
    at EOS, after ``max_new_tokens``, or just before the first ``stop`` string. ``seed`` makes sampling
    reproducible for the same prompts and batch size. Prompts may be chat message lists (or plain strings
    with ``chat_template=True``), rendered with the tokenizer's chat template. ``max_prompt_tokens`` keeps
    only the last tokens of longer prompts.
    """
    gc = generation_config(model, tokenizer, gen, stop=stop, **options)
    n_ret = gc.num_return_sequences
    ids = _prompt_ids(tokenizer, prompts, chat_template)
    if max_prompt_tokens:
        ids = [x[-max_prompt_tokens:] for x in ids]
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"tokenizer": tokenizer} if gc.stop_strings else {}

    def continue_batch(rows: list[list[int]]) -> list[list[str]]:
        # left padding: the prompts' ends line up in the last column, so new tokens line up too
        input_ids, mask = pad(rows, tokenizer.pad_token_id, side="left")
        out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                             generation_config=gc, **kwargs)
        texts = [truncate_at_stop(tokenizer.decode(seq, skip_special_tokens=True), stop)[0]
                 for seq in out[:, input_ids.shape[1]:].cpu()]
        results = [texts[k * n_ret:(k + 1) * n_ret] for k in range(len(rows))]
        if return_full_text:
            results = [[tokenizer.decode(r, skip_special_tokens=True) + t for t in texts_]
                       for r, texts_ in zip(rows, results)]
        return results

    try:
        return run_sorted(ids, [len(x) for x in ids], max(1, batch_size), continue_batch, desc="Generating",
                          progress=progress)
    finally:
        model.train(was_training)


def _stop_when(cancelled: Any) -> Any:
    """Stopping criteria for ``generate()`` that end every row at the next step once ``cancelled()`` is true (a
    reader that went away)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), bool(cancelled()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def stream_generate(model: Any, tokenizer: Any, prompt: str | Sequence[dict[str, str]], *,
                    gen: GenerateConfig | None = None, stop: Sequence[str] | None = None,
                    seed: int | None = None, chat_template: bool = False, **options: Any) -> Iterator[str]:
    """Yield the continuation of one prompt piece by piece as it is generated.

    Uses ``transformers.TextIteratorStreamer`` (generation runs in a thread). Text that could be the start
    of a stop string is held back until it is clear, so a stop string is never printed. ``options`` are
    the decoding controls of :func:`generate` (``max_new_tokens``, ``do_sample``, ``temperature``, ...).
    Closing the generator early (a reader that went away) stops the generation at its next token.
    """
    from transformers import TextIteratorStreamer

    cancelled = threading.Event()
    gc = generation_config(model, tokenizer, gen, stop=stop, **options)
    if gc.num_return_sequences != 1:
        raise UsageError("Streaming shows one sequence: use num_return_sequences=1.")
    ids = _prompt_ids(tokenizer, [prompt], chat_template)[0]
    device = next(model.parameters()).device
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if seed is not None:
        torch.manual_seed(seed)
    model.eval()
    kwargs: dict[str, Any] = {"tokenizer": tokenizer} if gc.stop_strings else {}
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                model.generate(input_ids=torch.tensor([ids], device=device),
                               attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
                               generation_config=gc, streamer=streamer,
                               stopping_criteria=_stop_when(cancelled.is_set), **kwargs)
        except BaseException as err:  # surfaced in the caller's thread below
            errors.append(err)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    hold = max((len(s) for s in stop or () if s), default=1) - 1
    text, shown, found = "", 0, False
    try:
        for piece in streamer:
            if found:  # drain the rest, so the generation thread can finish
                continue
            text += piece
            cut, found = truncate_at_stop(text, stop)
            if found:
                yield cut[shown:]
                continue
            safe = len(text) - hold
            if safe > shown:
                yield text[shown:safe]
                shown = safe
        if not found and len(text) > shown:
            yield text[shown:]
    finally:  # also when the reader closes the generator: generate() stops at its next step
        cancelled.set()
        thread.join()
    if errors:
        raise errors[0]


def stream_generate_batch(model: Any, tokenizer: Any, prompts: Sequence[str | Sequence[dict[str, str]]], *,
                          on_text: Any, gen: GenerateConfig | None = None, stop: Sequence[str] | None = None,
                          seed: int | None = None, chat_template: bool = False, cancelled: Any = None,
                          **options: Any) -> list[str]:
    """Continue every prompt in one batched ``generate()``, calling ``on_text(i, piece)`` as prompt ``i``'s text
    grows; return the whole texts, which are what :func:`generate` returns for these prompts (greedy: the same
    tokens, left-padded as there; a prompt's output does not depend on its batch mates).

    Each prompt's pieces add up to its text: text that could start a stop string, or an incomplete character,
    is held back until it is clear. ``cancelled()`` (checked at every step) stops the generation, e.g. when
    every reader has gone. One sequence per prompt and no beam search: beams cannot stream.
    """
    from transformers.generation.streamers import BaseStreamer

    gc = generation_config(model, tokenizer, gen, stop=stop, **options)
    if gc.num_return_sequences != 1 or gc.num_beams != 1:
        raise UsageError("Streaming shows one sequence per prompt and cannot use beam search: use "
                         "num_return_sequences=1 and num_beams=1.")
    ids = _prompt_ids(tokenizer, prompts, chat_template)
    eos = gc.eos_token_id
    ends = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    hold = max((len(s) for s in stop or () if s), default=1) - 1
    n = len(ids)
    tokens: list[list[int]] = [[] for _ in range(n)]
    finished, shown = [False] * n, [0] * n

    def emit(i: int, last: bool) -> None:
        if shown[i] < 0:  # its stop string was found: nothing more to show
            return
        text = tokenizer.decode(tokens[i], skip_special_tokens=True)
        cut, found = truncate_at_stop(text, stop)
        if found:
            end, finished[i] = len(cut), True
        else:
            end = len(text) if last else len(text) - hold
            if not last and text.endswith("\ufffd"):  # the first bytes of a character split across tokens
                end = min(end, len(text) - 1)
        if end > shown[i]:
            on_text(i, text[shown[i]:end])
            shown[i] = end
        if found:
            shown[i] = -1

    class Rows(BaseStreamer):
        """Receives the prompt, then one new token per row at each step (generate's streamer protocol)."""

        prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            for i, token in enumerate(value.reshape(-1).tolist()):
                if finished[i]:
                    continue
                if token in ends:
                    finished[i] = True
                    continue
                tokens[i].append(token)
                emit(i, last=False)

        def end(self) -> None:
            for i in range(n):
                emit(i, last=True)

    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"tokenizer": tokenizer} if gc.stop_strings else {}
    input_ids, mask = pad(ids, tokenizer.pad_token_id, side="left")
    try:
        with torch.inference_mode():
            model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=gc,
                           streamer=Rows(),
                           stopping_criteria=_stop_when(cancelled or (lambda: False)), **kwargs)
    finally:
        model.train(was_training)
    return [truncate_at_stop(tokenizer.decode(t, skip_special_tokens=True), stop)[0] for t in tokens]
