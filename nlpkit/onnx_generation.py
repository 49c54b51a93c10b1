"""Text generation on ONNX Runtime: the graphs ``nlpkit export`` writes for causal LMs and encoder-decoders, and
the models that run them behind transformers' own ``generate()``.

A causal LM exports as one graph, ``decoder.onnx``: one decoding step with a KV cache
(``input_ids``, ``attention_mask``, ``position_ids``, ``past.<layer>.key/value`` -> ``logits``,
``present.<layer>.key/value``); the first step runs the whole prompt against an empty cache. An encoder-decoder
exports ``encoder.onnx`` (``input_ids``, ``attention_mask`` -> ``encoder_hidden_states``) and the same kind of
``decoder.onnx`` step with ``encoder_hidden_states`` and ``encoder_attention_mask`` as inputs (the cross-attention
keys are recomputed each step: one graph serves every step). The masks go into the graph as 4-D additive
masks built here, and causal LMs get their positions from the padding mask, so nothing about a prompt's length
is fixed when the graph is traced.

:class:`OnnxCausalLM` and :class:`OnnxSeq2SeqLM` are ``transformers`` models (``GenerationMixin``) whose
``forward`` runs those sessions: greedy, sampling, beam search, stop strings and streamers all come from
``generate()`` unchanged, so a task's own batched generation (:func:`nlpkit.causal_lm.generate`, translation's
backends) runs an export exactly as it runs the PyTorch model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlpkit.artifacts import check_links_inside, inside
from nlpkit.errors import UsageError
from nlpkit.modeling import pretrained
from nlpkit.onnx_runtime import (
    ExportKind,
    ExportSpec,
    onnx_export_info,
    open_session,
    require_onnxruntime,
    session_options,
)

__all__ = ["CAUSAL_LM", "DECODER_FILE", "ENCODER_FILE", "GENERATOR_KINDS", "SEQ2SEQ", "GeneratorKind", "OnnxCausalLM",
           "OnnxSeq2SeqLM", "export_generator", "export_kind", "generator_export_kind", "generator_export_spec",
           "generator_kind", "open_generator"]

#: The descriptor's ``onnx.kind`` of an exported generator.
GENERATOR_KINDS = ("causal_lm", "seq2seq")
DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
_NEG = torch.finfo(torch.float32).min


def export_kind(path: str | Path) -> str | None:
    """The descriptor's ``onnx.kind`` when ``path`` is an ``nlpkit export`` of a generator, else None."""
    kind = (onnx_export_info(path) or {}).get("kind")
    return kind if kind in GENERATOR_KINDS else None


def generator_kind(model: Any) -> str | None:
    """``"seq2seq"`` for an encoder-decoder LM, ``"causal_lm"`` for a decoder-only LM, None for anything else."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "generate") or not getattr(model, "can_generate", lambda: False)():
        return None
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal_lm"


def _layers(config: Any) -> int:
    config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    for key in ("num_hidden_layers", "decoder_layers", "num_decoder_layers", "n_layer"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    raise UsageError(f"Cannot tell how many decoder layers a {type(config).__name__} has; it cannot be exported.")


def _additive(allowed: torch.Tensor) -> torch.Tensor:
    """A boolean ``allowed`` mask as the additive float mask attention adds to its scores."""
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, _NEG)


def _causal(query: int | torch.Tensor, keys: int | torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """(batch, 1, query, keys) additive mask: query ``i`` (the last ``query`` of ``keys`` positions) sees keys up
    to its own position, and none that ``padding`` (batch, keys; 0 = pad) marks."""
    k = torch.arange(keys)
    q = torch.arange(query) + (keys - query)
    allowed = (k[None, :] <= q[:, None])[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, :].bool()
    return _additive(allowed)


def _cache_from(flat: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> Any:
    """A DynamicCache holding the (key, value) pairs of ``flat`` as they are (shared, not copied)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i in range(len(flat) // 2):
        keys, values = flat[2 * i], flat[2 * i + 1]
        cache.update(keys[:, :, :0], values[:, :, :0], i)  # creates the layer, empty
        cache.layers[i].keys, cache.layers[i].values = keys, values
    return cache


def _cache_kwarg(model: Any, cache: Any) -> dict[str, Any]:
    """``cache`` under the argument name ``model.forward`` takes: ``cache`` (transformers >= 5.2x, where
    ``past_key_values`` is deprecated) or ``past_key_values``."""
    import inspect

    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


def _cache_of(output: Any) -> Any:
    """The cache of a model output: ``.cache`` (transformers >= 5.2x) or ``.past_key_values``."""
    return output.cache if "cache" in output.__dataclass_fields__ else output.past_key_values


def _with_cache(output_class: type, cache: Any, **fields: Any) -> Any:
    """``output_class(**fields)`` with ``cache`` under the field name that class has."""
    name = "cache" if "cache" in output_class.__dataclass_fields__ else "past_key_values"
    return output_class(**fields, **{name: cache})


def _flat(cache: Any) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


class _CausalStep(torch.nn.Module):
    """The traced causal-LM step (see the module docstring)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = _causal(input_ids.shape[1], attention_mask.shape[1], attention_mask)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                         **_cache_kwarg(self.model, _cache_from(past)), use_cache=True)
        return (out.logits, *_flat(_cache_of(out)))


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Seq2SeqStep(torch.nn.Module):
    """The traced encoder-decoder step: self-attention cache in, cross-attention recomputed."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        query = input_ids.shape[1]
        keys = query + past[0].shape[2]
        cache = EncoderDecoderCache(_cache_from(past), DynamicCache())
        out = self.model(decoder_input_ids=input_ids, encoder_outputs=(encoder_hidden_states,),
                         attention_mask=encoder_attention_mask,
                         decoder_attention_mask=torch.ones((input_ids.shape[0], keys), dtype=torch.long),
                         **_cache_kwarg(self.model, cache), use_cache=True)
        return (out.logits, *_flat(_cache_of(out).self_attention_cache))


def _past_shape(model: Any, batch: int, length: int) -> tuple[int, int, int, int]:
    """(batch, kv heads, length, head dim) of one cached key tensor of ``model``."""
    with torch.no_grad():
        if generator_kind(model) == "seq2seq":
            enc = model.get_encoder()(input_ids=torch.ones((1, 2), dtype=torch.long)).last_hidden_state
            out = model(decoder_input_ids=torch.ones((1, 1), dtype=torch.long), encoder_outputs=(enc,),
                        use_cache=True)
            key = _cache_of(out).self_attention_cache.layers[0].keys
        else:
            key = _cache_of(model(input_ids=torch.ones((1, 1), dtype=torch.long), use_cache=True)).layers[0].keys
    return batch, key.shape[1], length, key.shape[3]


def _past_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{part}" for i in range(layers) for part in ("key", "value")]


def export_generator(model: Any, folder: Path, opset: int) -> dict[str, Any]:
    """Write the graphs of ``model`` (a causal LM or encoder-decoder in fp32, eager attention) into ``folder``;
    returns what the descriptor records about them."""
    kind = generator_kind(model)
    if kind is None:
        raise UsageError(f"A {type(model).__name__} does not generate text; it cannot be exported as a generator.")
    layers = _layers(model.config)
    model.set_attn_implementation("eager")
    batch, prompt, cached = 2, 7, 3
    past = [torch.randn(_past_shape(model, batch, cached)) for _ in range(2 * layers)]
    past_in, present_out = _past_names(layers, "past"), _past_names(layers, "present")
    dynamic: dict[str, dict[int, str]] = {n: {0: "batch", 2: "past_sequence"} for n in past_in}
    dynamic.update({n: {0: "batch", 2: "sequence"} for n in present_out})
    dynamic["logits"] = {0: "batch", 1: "new_tokens"}
    ids = torch.randint(3, 20, (batch, prompt))
    graphs = []
    if kind == "causal_lm":
        mask = torch.ones((batch, cached + prompt), dtype=torch.long)
        mask[0, :2] = 0  # left padding, as batched generation has
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -prompt:]
        inputs = ["input_ids", "attention_mask", "position_ids", *past_in]
        dynamic.update({"input_ids": {0: "batch", 1: "new_tokens"}, "attention_mask": {0: "batch", 1: "sequence"},
                        "position_ids": {0: "batch", 1: "new_tokens"}})
        _trace(_CausalStep(model), (ids, mask, positions, *past), folder / DECODER_FILE, inputs,
               ["logits", *present_out], dynamic, opset)
        graphs.append(DECODER_FILE)
    else:
        source = torch.randint(3, 20, (batch, 9))
        source_mask = torch.ones_like(source)
        source_mask[0, -3:] = 0
        _trace(_Encoder(model), (source, source_mask), folder / ENCODER_FILE, ["input_ids", "attention_mask"],
               ["encoder_hidden_states"], {"input_ids": {0: "batch", 1: "source"},
                                           "attention_mask": {0: "batch", 1: "source"},
                                           "encoder_hidden_states": {0: "batch", 1: "source"}}, opset)
        with torch.no_grad():
            hidden = _Encoder(model)(source, source_mask)
        inputs = ["input_ids", "encoder_hidden_states", "encoder_attention_mask", *past_in]
        dynamic.update({"input_ids": {0: "batch", 1: "new_tokens"},
                        "encoder_hidden_states": {0: "batch", 1: "source"},
                        "encoder_attention_mask": {0: "batch", 1: "source"}})
        _trace(_Seq2SeqStep(model), (ids[:, :2], hidden, source_mask, *past), folder / DECODER_FILE, inputs,
               ["logits", *present_out], dynamic, opset)
        graphs += [ENCODER_FILE, DECODER_FILE]
    return {"kind": kind, "graphs": graphs, "layers": layers}


def _trace(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
           outputs: list[str], dynamic: dict[str, dict[int, str]], opset: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated, and tracing warns about the Python branches of
        # the modeling code; the export is checked against the PyTorch model afterwards (nlpkit.export).
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes={k: v for k, v in dynamic.items() if k in inputs + outputs},
                          opset_version=opset, dynamo=False)


# ---------------------------------------------------------------------------------------------- running
class _SessionMixin:
    """Lazily opened ONNX Runtime sessions (so the pipeline can set the thread count first)."""

    folder: Path
    threads: int | None
    #: Marks a model :func:`nlpkit.loader.load` opened from an export (:func:`nlpkit.loader.runs_on_onnx`).
    runs_on_onnx = True

    def _session(self, name: str) -> tuple[Any, list[Any], list[str]]:
        """The session of graph ``name``, its input specs and its output names (read once, not per step)."""
        sessions = self.__dict__.setdefault("_sessions", {})
        if name not in sessions:
            require_onnxruntime()  # the install hint first
            path = inside(self.folder, name)
            if not path.is_file():
                raise UsageError(f"{self.folder} has no {name}: export the run again with `nlpkit export`.")
            options = session_options(self.threads)
            # Each decoding step alternates a graph run with generate()'s own torch work (logits processors,
            # the next token, the cache): ORT's threads must not spin in between and hold the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = open_session(path, options)
            sessions[name] = (session, session.get_inputs(), [o.name for o in session.get_outputs()])
        return sessions[name]

    def _run(self, name: str, feeds: dict[str, Any]) -> tuple[list[str], list[np.ndarray]]:
        session, inputs, names = self._session(name)
        wanted = {spec.name for spec in inputs}
        return names, session.run(names, {k: _numpy(v) for k, v in feeds.items() if k in wanted})

    def _past_feeds(self, cache: Any, batch: int) -> dict[str, np.ndarray]:
        feeds = {}
        layers = cache.layers if cache is not None and cache.get_seq_length() else None
        for spec in self._session(DECODER_FILE)[1]:
            if not spec.name.startswith("past."):
                continue
            _, index, part = spec.name.split(".")
            if layers is not None:
                layer = layers[int(index)]
                feeds[spec.name] = _numpy(layer.keys if part == "key" else layer.values)
            else:  # the first step: an empty cache of the graph's head count and size
                heads, size = spec.shape[1], spec.shape[3]
                feeds[spec.name] = np.zeros((batch, heads, 0, size), dtype=np.float32)
        return feeds

    @staticmethod
    def _cache(names: list[str], outputs: list[np.ndarray]) -> Any:
        """The graph's ``present.*`` outputs as a DynamicCache that shares their memory (no copy per step)."""
        return _cache_from([torch.from_numpy(o) for n, o in zip(names, outputs) if n.startswith("present.")])

    def to(self, device: Any) -> Any:
        if torch.device(device).type != "cpu":
            raise UsageError(f"device={device!r}: an exported ONNX model runs on the CPU; use device='cpu' or "
                             f"the PyTorch run folder for a GPU.")
        return self


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().contiguous().numpy() if isinstance(value, torch.Tensor) else value


def _model_classes() -> tuple[type, type]:
    """The two model classes, built on first use (transformers is imported lazily everywhere in nlpkit)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast, Seq2SeqLMOutput

    class _OnnxGenerator(_SessionMixin, PreTrainedModel, GenerationMixin):
        config_class = PretrainedConfig
        main_input_name = "input_ids"
        _supports_cache_class = True

        def __init__(self, config: Any, folder: Path, threads: int | None = None):
            super().__init__(config)
            self.folder, self.threads = Path(folder), threads
            # generate() and nlpkit's batching read the device from the parameters: one empty CPU one
            self._anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

        def train(self, mode: bool = True) -> Any:
            return super().train(False)

        def __repr__(self) -> str:
            return f"{type(self).__name__}({str(self.folder)!r})"

    class CausalLM(_OnnxGenerator):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    past_key_values: Any = None, cache: Any = None, **_: Any) -> Any:
            cache = cache if cache is not None else past_key_values
            batch, new = input_ids.shape
            seen = cache.get_seq_length() if cache is not None else 0
            if attention_mask is None:
                attention_mask = torch.ones((batch, seen + new), dtype=torch.long)
            mask = attention_mask.long()
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -new:]
            feeds = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions,
                     **self._past_feeds(cache, batch)}
            names, outputs = self._run(DECODER_FILE, feeds)
            return _with_cache(CausalLMOutputWithPast, self._cache(names, outputs),
                               logits=torch.from_numpy(outputs[0]))

        def prepare_inputs_for_generation(self, input_ids: torch.Tensor, past_key_values: Any = None,
                                          attention_mask: torch.Tensor | None = None, cache: Any = None,
                                          **kwargs: Any) -> dict[str, Any]:
            cache = cache if cache is not None else past_key_values
            seen = cache.get_seq_length() if cache is not None else 0
            return {"input_ids": input_ids[:, seen:], "attention_mask": attention_mask, "past_key_values": cache}

    class Encoder(torch.nn.Module):
        def __init__(self, owner: Any):
            super().__init__()
            self.owner = [owner]  # a list: not a submodule (no recursion into the owner)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            _, outputs = self.owner[0]._run(ENCODER_FILE, {"input_ids": input_ids, "attention_mask": attention_mask})
            return BaseModelOutput(last_hidden_state=torch.from_numpy(outputs[0]))

    class Seq2SeqLM(_OnnxGenerator):
        def __init__(self, config: Any, folder: Path, threads: int | None = None):
            super().__init__(config, folder, threads)
            self._encoder = [Encoder(self)]

        def get_encoder(self, *_: Any) -> Any:
            return self._encoder[0]

        def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
            """The decoder inputs of ``labels`` as transformers' encoder-decoders make them: the start token,
            then the labels but the last, the ignored positions (-100) as padding. The logits are the same as
            the PyTorch model's; the loss (not computed here) is the caller's."""
            start = self.config.decoder_start_token_id
            if start is None:
                start = self.generation_config.decoder_start_token_id
            shifted = labels.new_full(labels.shape, start)
            shifted[:, 1:] = labels[:, :-1]
            return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

        def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    decoder_input_ids: torch.Tensor | None = None, encoder_outputs: Any = None,
                    past_key_values: Any = None, cache: Any = None, labels: torch.Tensor | None = None,
                    **_: Any) -> Any:
            from transformers import DynamicCache, EncoderDecoderCache

            cache = cache if cache is not None else past_key_values
            if decoder_input_ids is None and labels is not None:  # teacher forcing (nlpkit evaluate's NLL)
                decoder_input_ids = self._shift_right(labels)
            if encoder_outputs is None:
                encoder_outputs = self.get_encoder()(input_ids, attention_mask)
            hidden = encoder_outputs[0]
            if attention_mask is None:
                attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long)
            self_cache = cache.self_attention_cache if cache is not None and hasattr(
                cache, "self_attention_cache") else cache
            seen = self_cache.get_seq_length() if self_cache is not None else 0
            step = decoder_input_ids[:, seen:]
            feeds = {"input_ids": step, "encoder_hidden_states": hidden, "encoder_attention_mask": attention_mask,
                     **self._past_feeds(self_cache, step.shape[0])}
            names, outputs = self._run(DECODER_FILE, feeds)
            new = EncoderDecoderCache(self._cache(names, outputs), DynamicCache())
            return _with_cache(Seq2SeqLMOutput, new, logits=torch.from_numpy(outputs[0]),
                               encoder_last_hidden_state=hidden)

        def prepare_inputs_for_generation(self, decoder_input_ids: torch.Tensor, past_key_values: Any = None,
                                          attention_mask: torch.Tensor | None = None, encoder_outputs: Any = None,
                                          cache: Any = None, **kwargs: Any) -> dict[str, Any]:
            return {"decoder_input_ids": decoder_input_ids, "attention_mask": attention_mask,
                    "encoder_outputs": encoder_outputs,
                    "past_key_values": cache if cache is not None else past_key_values}

    _CLASSES = (CausalLM, Seq2SeqLM)
    return _CLASSES


_CLASSES: tuple[type, type] | None = None


def OnnxCausalLM(folder: str | Path, threads: int | None = None,  # noqa: N802 (a class, built lazily)
                 trust_remote_code: bool = False) -> Any:
    """The causal LM exported at ``folder``, as a transformers model whose ``generate()`` runs ONNX Runtime."""
    return _open(folder, threads, _model_classes()[0], trust_remote_code)


def OnnxSeq2SeqLM(folder: str | Path, threads: int | None = None,  # noqa: N802
                  trust_remote_code: bool = False) -> Any:
    """The encoder-decoder exported at ``folder``, as a transformers model whose ``generate()`` runs ONNX
    Runtime."""
    return _open(folder, threads, _model_classes()[1], trust_remote_code)


def _open(folder: str | Path, threads: int | None, cls: type, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig, GenerationConfig

    folder = Path(folder)
    check_links_inside(folder)  # graphs and their external weights: only what the export holds
    model = cls(pretrained(AutoConfig, folder, trust_remote_code=trust_remote_code), folder, threads)
    if inside(folder, "generation_config.json").is_file():
        model.generation_config = pretrained(GenerationConfig, folder)
    return model.eval()


def open_generator(folder: str | Path, kind: str, threads: int | None = None, trust_remote_code: bool = False
                   ) -> Any:
    """The exported generator at ``folder`` (``kind``: the descriptor's ``causal_lm`` or ``seq2seq``); its config
    is read through :func:`nlpkit.modeling.pretrained` (``trust_remote_code``: the caller's opt-in)."""
    if kind == "causal_lm":
        return OnnxCausalLM(folder, threads, trust_remote_code)
    if kind == "seq2seq":
        return OnnxSeq2SeqLM(folder, threads, trust_remote_code)
    raise UsageError(f"{folder}: unknown exported model kind {kind!r} (expected causal_lm or seq2seq).")


class GeneratorKind(ExportKind):
    """The export kind of a text generator (:data:`CAUSAL_LM`, :data:`SEQ2SEQ`): KV-cache decoding graphs
    (:func:`export_generator`), int8 on MatMul weights only (the token embedding, a Gather tied to the output
    layer in most LMs, stays fp32), opened as a transformers model whose ``generate()`` runs ONNX Runtime."""

    quantize_ops = ["MatMul"]

    def export(self, model: Any, folder: Path, opset: int, optimize: bool) -> dict[str, Any]:
        if generator_kind(model) != self.name:
            raise UsageError(f"A {type(model).__name__} is not a {self.name} model; it cannot be exported as one.")
        return {**export_generator(model, folder, opset), "fused": False}

    def open(self, folder: str | Path, *, threads: int | None = None, trust_remote_code: bool = False) -> Any:
        return open_generator(folder, self.name, threads, trust_remote_code)

    def max_abs_diff(self, model: Any, exported: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
        """Next-token logits on each text alone (the whole text as the prompt, or as the source with the text's
        own tokens as the decoder's)."""
        diff = 0.0
        with torch.inference_mode():
            for text in texts:
                ids = torch.tensor([tokenizer(text)["input_ids"] or [tokenizer.eos_token_id]])
                inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                if model.config.is_encoder_decoder:
                    start = model.config.decoder_start_token_id
                    inputs["decoder_input_ids"] = torch.cat([torch.tensor([[start]]), ids[:, :-1]], dim=1)
                diff = max(diff, float((model(**inputs).logits.float() - exported(**inputs).logits).abs().max()))
        return diff

    def write_files(self, model: Any, folder: Path) -> None:
        model.config.save_pretrained(folder)
        model.generation_config.save_pretrained(folder)


#: A decoder-only LM (generation; translation's decoder-only backend).
CAUSAL_LM = GeneratorKind("causal_lm")
#: An encoder-decoder (translation).
SEQ2SEQ = GeneratorKind("seq2seq")


def generator_export_kind(model: Any) -> GeneratorKind | None:
    """:data:`CAUSAL_LM` or :data:`SEQ2SEQ` for a model that generates, else None."""
    kind = generator_kind(model)
    return None if kind is None else (CAUSAL_LM if kind == "causal_lm" else SEQ2SEQ)


#: The share of the check texts an int8 generator must decode as the PyTorch model does (greedy, 16 tokens).
INT8_MIN_AGREEMENT = 0.5


def generator_export_spec(model: Any, check_texts: list[str]) -> ExportSpec:
    """The export of a task whose model generates text (translation, generation): its kind, and the task's
    greedy outputs (16 new tokens) on ``check_texts`` compared exactly; an int8 export must keep
    :data:`INT8_MIN_AGREEMENT` of them."""
    kind = generator_export_kind(model)
    if kind is None:
        raise UsageError(f"A {type(model).__name__} does not generate text; it cannot be exported as a generator.")
    return ExportSpec(
        kind, check_inputs=list(check_texts), agreement_name="greedy_agreement",
        predict_kwargs={"max_new_tokens": 16, "num_beams": 1, "do_sample": False},
        min_int8_agreement=INT8_MIN_AGREEMENT,
        no_fallback_reason="it generates text; the fp32 fallback is for classifiers' close calls",
        int8_hint="Dynamic int8 gives each activation one scale per batch, which the outlier channels of many "
                  "decoder LMs (Llama, SmolLM) do not survive. Export in fp32 (no --quantize).")
