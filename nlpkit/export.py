"""``nlpkit export``: a trained model as ONNX graphs for fast CPU inference with ONNX Runtime.

A text generator (translation, generation: a causal LM or an encoder-decoder) exports as a KV-cache decoding
step plus, for an encoder-decoder, its encoder (:mod:`nlpkit.onnx_generation`), int8 on request, checked
against the PyTorch model's logits and greedy outputs. A classifier (sentiment) goes through these steps, each
with a well-kept tool:

1. ``torch.onnx.export`` (TorchScript exporter, dynamic batch and sequence axes) of the model with eager
   attention, whose plain MatMul/Softmax pattern ONNX Runtime's transformer optimizer recognises;
2. ``onnxruntime.transformers.optimizer`` fuses embeddings + LayerNorm, attention, bias + GELU and
   residual + LayerNorm into single kernels (BERT-family encoders; a graph it cannot fuse is kept as exported);
3. with ``quantize="int8"``, ``onnxruntime.quantization.quantize_dynamic``: int8 weights per output channel,
   activations quantized per batch at run time (every MatMul by default; without a fallback the nodes matching
   :data:`KEEP_FP32` stay fp32);
4. with a fallback (int8 single-label classifiers: gap :data:`DEFAULT_FALLBACK_MARGIN` unless another is given,
   0 for none), the fused fp32 graph is kept beside the int8 one as ``fallback.onnx``: rows whose int8 scores
   are a close call (top-two probability gap under the margin) are scored again in fp32
   (:class:`nlpkit.onnx_runtime.OnnxModel`), so nearly every label is the fp32 model's at close to int8 speed;
5. a check: the exported model and the PyTorch model score the same texts; the fp32 export must match the
   logits to 1e-3 or the export fails. The figures go into the descriptor.

The output folder (``model.onnx``, tokenizer, ``config.json``, ``nlpkit_task.json`` with an ``onnx`` entry) is
written atomically; ``nlpkit.pipeline(folder)`` runs it through the task's own ``predict``
(:class:`nlpkit.onnx_runtime.OnnxModel`).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from nlpkit.artifacts import atomic_dir, read_descriptor
from nlpkit.errors import ModelNotFoundError, UsageError
from nlpkit.onnx_generation import export_generator, generator_kind, open_generator
from nlpkit.onnx_runtime import (
    DESCRIPTOR_KEY,
    FALLBACK_FILE,
    ONNX_FILE,
    OnnxModel,
    onnx_export_info,
    require_onnxruntime,
)
from nlpkit.registry import available_tasks, get_task

__all__ = ["DEFAULT_FALLBACK_MARGIN", "FORMATS", "KEEP_FP32", "QUANTIZATIONS", "exportable_tasks", "export_model"]

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
#: Nodes int8 export keeps in fp32 (a regular expression on ONNX node names, which follow the module paths):
#: the attention output and feed-forward output projections. Their inputs (the attention context and the GELU
#: output) have the widest activation ranges, so one dynamic int8 scale per batch loses most there; measured on
#: the default sentiment model, keeping them in fp32 raises label agreement with PyTorch from 98.9% to 99.5%
#: (docs/inference.md).
KEEP_FP32 = r"/output/dense/|/out_lin/|/ffn/lin2/"
#: The fallback gap of a single-label classifier's int8 export unless one is given: measured on the default
#: sentiment model (every MatMul int8, close calls in fp32), 3.38x transformers.pipeline at 99.80% label
#: agreement, test accuracy within 0.1 point (docs/inference.md).
DEFAULT_FALLBACK_MARGIN = 0.2
#: The ONNX opset: ORT 1.17+ runs it, and it has LayerNormalization for the exporter.
OPSET = 17
#: The largest |logit| difference the fp32 export may have from PyTorch on the check texts.
FP32_TOLERANCE = 1e-3
#: The share of the check texts an int8 generator must decode as the PyTorch model does (greedy, 16 tokens).
INT8_MIN_AGREEMENT = 0.5
CHECK_TEXTS = [
    "a gripping, beautifully shot film with a story that never lets go",
    "dull and far too long",
    "ok",
    "the cast tries hard, but the script gives them nothing to do for two hours, and the ending is a mess",
]


def exportable_tasks() -> list[str]:
    """Tasks whose models export: sequence classifiers, causal LMs and encoder-decoders (``Task.architectures``)."""
    kinds = ("ForSequenceClassification", "ForCausalLM", "ForConditionalGeneration", "MTModel")
    return [name for name in available_tasks() if any(k in a for k in kinds for a in get_task(name).architectures)]


def _check_target(out: Path, force: bool) -> None:
    """``out`` may be new, empty, or (with ``force``, ``--overwrite``) an earlier export; never any other folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder path for the export.")
    if not any(out.iterdir()):
        return
    if onnx_export_info(out) is None:
        raise UsageError(f"--out {out} holds files that are not an nlpkit ONNX export; an export goes into a new or "
                         f"empty folder, or replaces an earlier export (--overwrite). Choose another folder.")
    if not force:
        raise UsageError(f"--out {out} holds an earlier export; pass --overwrite to replace it, or choose another "
                         f"folder.")


def _load(run: str | Path) -> Any:
    """The task of ``run`` (a run or model folder with an nlpkit descriptor), its model loaded on the CPU."""
    path = Path(run).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"{run} does not exist: give a run folder (outputs/<run>) or its model/ folder.")
    found = read_descriptor(path)
    if found is None:
        raise ModelNotFoundError(f"{run} is not an nlpkit run or model folder (no nlpkit_task.json in it or in its "
                                 f"model/): train one with `nlpkit train sentiment` first.")
    if onnx_export_info(found.folder) is not None:
        raise UsageError(f"{run} is already an ONNX export; export from the PyTorch run it came from "
                         f"({onnx_export_info(found.folder).get('source')}).")
    if found.task not in exportable_tasks():
        raise UsageError(f"{run} is a {found.task} model; nlpkit export handles {', '.join(exportable_tasks())} "
                         f"models (transformers).")
    task = get_task(found.task).from_pretrained(str(path), **{"model.dtype": "float32"})
    if getattr(task.model, "is_quantized", False):
        raise UsageError(f"{run} loads with bitsandbytes quantization (model.quantization); export needs plain "
                         f"weights: export a run trained without it, or merge the adapter into the base first.")
    if hasattr(task.model, "merge_and_unload"):  # a LoRA run: fold the adapter into the weights
        task.model = task.model.merge_and_unload()
    task.model.to("cpu").float().eval()
    return task


def _export_graph(model: torch.nn.Module, path: Path, opset: int) -> None:
    """``torch.onnx.export`` with dynamic batch and sequence axes, inputs ``input_ids`` and ``attention_mask``."""
    # Eager attention exports as MatMul/Softmax, the pattern ONNX Runtime fuses into its Attention kernel; the
    # SDPA path exports to a graph it does not fuse (about 25% slower here).
    model.set_attn_implementation("eager")
    ids = torch.ones((2, 8), dtype=torch.long)
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
               "logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo=True, which needs onnxscript and
        # gives a graph the transformer optimizer does not fuse yet.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes=dynamic, opset_version=opset, dynamo=False)


def _fuse(path: Path, config: Any) -> bool:
    """Fuse the transformer blocks of the graph at ``path`` in place (ONNX Runtime's optimizer); False when the
    graph has no fusable attention (it is then kept as exported)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    if not heads or not hidden:
        return False
    optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    if not optimized.get_fused_operator_statistics().get("Attention"):
        return False
    optimized.save_model_to_file(str(path))
    return True


def _quantize(src: Path, dst: Path, keep_fp32: str, op_types: list[str] | None = None) -> dict[str, Any]:
    """Dynamic int8 quantization of ``src`` into ``dst``; the nodes matching ``keep_fp32`` stay fp32;
    ``op_types``: only these ops (default: every op type ONNX Runtime quantizes dynamically)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        pattern = re.compile(keep_fp32) if keep_fp32 else None
    except re.error as err:
        raise UsageError(f"--keep-fp32 {keep_fp32!r} is not a valid regular expression ({err}).") from err
    names = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node]
    kept = [n for n in names if pattern is not None and pattern.search(n)]
    root = logging.getLogger()
    level = root.level
    # The quantizer logs "Please consider to run pre-processing before quantization" through the root logger on
    # every call; the graph here is already fused (ORT's own optimizer), so the advice is noise for our users.
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept,
                         op_types_to_quantize=op_types,
                         extra_options={"MatMulConstBOnly": True,  # only weight matrices, not activation x activation
                                        # fused ops (Attention, EmbedLayerNormalization) carry no shape information
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return {"weights": "int8, per channel", "activations": "uint8, dynamic (per batch)",
            "kept_fp32": keep_fp32, "nodes_kept_fp32": len(kept)}


def _compare(task: Any, folder: Path, fallback: dict[str, Any] | None = None) -> dict[str, float]:
    """Logits of the PyTorch model and of the export at ``folder`` on :data:`CHECK_TEXTS`."""
    enc = task.tokenizer(CHECK_TEXTS, padding=True, truncation=True, max_length=task.cfg.data.max_length,
                         return_tensors="pt")
    with torch.inference_mode():
        ref = task.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
    model = OnnxModel(folder, fallback=fallback)
    got = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return {"max_abs_logit_diff": float((ref - got).abs().max()),
            "label_agreement": float((ref.argmax(-1) == got.argmax(-1)).float().mean())}


def export_model(run: str | Path, out: str | Path, *, format: str = "onnx", quantize: str | None = None,
                 force: bool = False, keep_fp32: str | None = None, optimize: bool = True, opset: int = OPSET,
                 fallback_margin: float | None = None) -> dict[str, Any]:
    """Export the model of ``run`` (a sentiment, translation or generation run or model folder) into the folder
    ``out``; returns the descriptor's ``onnx`` entry.

    ``quantize="int8"``: dynamic int8. A single-label classifier then quantizes every MatMul and keeps the fp32
    graph for close calls (``fallback_margin`` :data:`DEFAULT_FALLBACK_MARGIN`: rows whose top-two probability
    gap is under it are re-scored in fp32); ``fallback_margin=0`` turns that off, and then ``keep_fp32``
    defaults to :data:`KEEP_FP32` (the sensitive projections stay fp32; ``""`` quantizes every MatMul). Other
    models (multi-label classifiers, generators) have no fallback. ``optimize=False`` skips the transformer
    fusion. ``force`` (``--overwrite``) replaces an earlier export at ``out``.
    """
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: nlpkit exports {', '.join(FORMATS)}.")
    if quantize not in (None, *QUANTIZATIONS):
        raise UsageError(f"--quantize {quantize!r}: choose {', '.join(QUANTIZATIONS)} (or leave it out for fp32).")
    if fallback_margin is not None and (not 0 <= fallback_margin <= 1 or (fallback_margin and not quantize)):
        raise UsageError(f"--fallback-margin {fallback_margin}: give a probability gap in (0, 1] together with "
                         f"--quantize int8 (an fp32 export has nothing to fall back from), or 0 for none.")
    out = Path(out).expanduser()
    src_path = Path(run).expanduser().resolve()
    if out.resolve() in (src_path, src_path / "model"):
        raise UsageError(f"--out {out} would overwrite the run's own model; choose another folder.")
    _check_target(out, force)
    ort = require_onnxruntime()
    task = _load(run)
    kind = generator_kind(task.model)
    multi_label = kind is None and task.model.config.problem_type == "multi_label_classification"
    if fallback_margin and kind is not None:
        raise UsageError(f"--fallback-margin: {run} is a {task.name} model, which generates text; the fp32 "
                         f"fallback is for classifiers' close calls. Export without it.")
    if fallback_margin and multi_label:
        raise UsageError(f"--fallback-margin: {run} is a multi-label classifier, whose labels are per-label "
                         f"thresholds rather than one best label; export it without a fallback.")
    if fallback_margin is None:  # the default: a single-label classifier's int8 export falls back on close calls
        fallback_margin = DEFAULT_FALLBACK_MARGIN if quantize and kind is None and not multi_label else 0.0
    if keep_fp32 is None:  # with a fallback every MatMul is int8; without one the sensitive projections stay fp32
        keep_fp32 = "" if fallback_margin or kind is not None else KEEP_FP32
    entry: dict[str, Any] = {"format": "onnx", "precision": quantize or "fp32", "source": str(src_path),
                             "opset": opset, "onnxruntime": ort.__version__, "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind is not None:
        return _export_generator(task, out, entry, quantize, keep_fp32, opset)
    with atomic_dir(out) as tmp:
        graph = tmp / ("fp32.onnx" if quantize else ONNX_FILE)
        _export_graph(task.model, graph, opset)
        entry["fused"] = _fuse(graph, task.model.config) if optimize else False
        if quantize:
            entry["quantization"] = _quantize(graph, tmp / ONNX_FILE, keep_fp32)
            if fallback_margin:
                graph.rename(tmp / FALLBACK_FILE)
                entry["fallback"] = {"file": FALLBACK_FILE, "margin": fallback_margin}
            else:
                graph.unlink()
        task.tokenizer.save_pretrained(tmp)
        task.model.config.save_pretrained(tmp)
        entry["check"] = check = _compare(task, tmp, entry.get("fallback"))
        if not quantize and check["max_abs_logit_diff"] > FP32_TOLERANCE:
            raise RuntimeError(f"The fp32 ONNX export differs from the PyTorch model by "
                               f"{check['max_abs_logit_diff']:.2e} in the logits (more than {FP32_TOLERANCE}); "
                               f"try --no-optimize. Nothing was written.")
        task.write_descriptor(tmp, **{DESCRIPTOR_KEY: entry})
    return entry


def _export_generator(task: Any, out: Path, entry: dict[str, Any], quantize: str | None, keep_fp32: str,
                      opset: int) -> dict[str, Any]:
    """A causal LM's or encoder-decoder's graphs (:mod:`nlpkit.onnx_generation`), int8 if asked, checked
    against the PyTorch model: logits on the check texts, and the task's own greedy outputs."""
    with atomic_dir(out) as tmp:
        entry.update(export_generator(task.model, tmp, opset), fused=False)
        if quantize:
            quantized = []
            for name in entry["graphs"]:
                fp32 = tmp / f"fp32-{name}"
                (tmp / name).rename(fp32)
                # MatMul weights only: the token embedding (a Gather, tied to the output layer in most LMs)
                # stays fp32
                quantized.append(_quantize(fp32, tmp / name, keep_fp32, op_types=["MatMul"]))
                fp32.unlink()
            entry["quantization"] = {**quantized[0], "nodes_kept_fp32": sum(q["nodes_kept_fp32"] for q in quantized)}
        task.tokenizer.save_pretrained(tmp)
        task.model.config.save_pretrained(tmp)
        task.model.generation_config.save_pretrained(tmp)
        entry["check"] = check = _compare_generations(task, open_generator(tmp, entry["kind"]))
        if not quantize and check["max_abs_logit_diff"] > FP32_TOLERANCE:
            raise RuntimeError(f"The fp32 ONNX export differs from the PyTorch model by "
                               f"{check['max_abs_logit_diff']:.2e} in the logits (more than {FP32_TOLERANCE}). "
                               f"Nothing was written.")
        if quantize and check["greedy_agreement"] < INT8_MIN_AGREEMENT:
            raise UsageError(
                f"--quantize int8 changes what this {task.name} model generates: {check['greedy_agreement']:.0%} "
                f"of the check texts decode as with PyTorch (max |logit diff| {check['max_abs_logit_diff']:.1f}). "
                f"Dynamic int8 gives each activation one scale per batch, which the outlier channels of many "
                f"decoder LMs (Llama, SmolLM) do not survive. Export in fp32 (no --quantize). Nothing was written.")
        task.write_descriptor(tmp, **{DESCRIPTOR_KEY: entry})
    return entry


def _compare_generations(task: Any, exported: Any) -> dict[str, float]:
    """Next-token logits of the PyTorch model and the export on the check texts (the whole text as the prompt,
    or as the source with the text's own tokens as the decoder's), and how many of the task's greedy outputs
    (16 new tokens) are the same."""
    texts = [*task.usage_example, *CHECK_TEXTS[:3]]
    diff = 0.0
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([task.tokenizer(text)["input_ids"] or [task.tokenizer.eos_token_id]])
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if task.model.config.is_encoder_decoder:
                start = task.model.config.decoder_start_token_id
                inputs["decoder_input_ids"] = torch.cat([torch.tensor([[start]]), ids[:, :-1]], dim=1)
            diff = max(diff, float((task.model(**inputs).logits.float() - exported(**inputs).logits).abs().max()))
        reference = task.predict(texts, max_new_tokens=16, num_beams=1, do_sample=False)
        torch_model, task.model = task.model, exported
        try:
            got = task.predict(texts, max_new_tokens=16, num_beams=1, do_sample=False)
        finally:
            task.model = torch_model
    same = sum(a == b for a, b in zip(reference, got))
    return {"max_abs_logit_diff": diff, "greedy_agreement": same / len(texts)}
