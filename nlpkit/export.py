"""``nlpkit export``: a trained model as ONNX graphs for fast CPU inference with ONNX Runtime.

What differs per task is the task's :meth:`~nlpkit.task.Task.export_spec` (an
:class:`~nlpkit.onnx_runtime.ExportSpec`): the export kind (:class:`~nlpkit.onnx_runtime.ExportKind`: how the
graph is traced and opened again: a classifier's fused encoder, a generator's KV-cache decoding step, or a kind a
plugin defines), the task's own check inputs, and how a prediction of the PyTorch model and of the export are
compared. This module holds only what every kind shares, each step with a well-kept tool:

1. the kind's ``export`` (``torch.onnx.export``, TorchScript exporter, dynamic axes; an encoder's graph fused by
   ``onnxruntime.transformers.optimizer``);
2. with ``quantize="int8"``, ``onnxruntime.quantization.quantize_dynamic`` on every graph: int8 weights per
   output channel, activations quantized per batch at run time (the nodes matching ``keep_fp32`` stay fp32);
3. with a fallback (kinds that support one, e.g. a single-label classifier, whose spec gives the default gap),
   the fp32 graph is kept beside the int8 one as ``fallback.onnx``: close calls are scored again in fp32 inside
   the opened model;
4. a check: the kind compares the outputs of the export and the PyTorch model on the spec's texts (the fp32
   export must match them to the spec's tolerance or the export fails), and the task's ``predict`` runs the
   spec's check inputs on both, compared by the spec's agreement function (an int8 export under the spec's
   minimum is refused). The figures go into the descriptor.

The output folder (graphs, tokenizer, ``config.json``, ``nlpkit_task.json`` with an ``onnx`` entry naming the
kind) is written atomically; ``nlpkit.pipeline(folder)`` runs it through the task's own ``predict``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from nlpkit.artifacts import atomic_dir, read_descriptor
from nlpkit.errors import ModelNotFoundError, UsageError
from nlpkit.onnx_runtime import (
    DESCRIPTOR_KEY,
    FALLBACK_FILE,
    ONNX_FILE,
    ExportSpec,
    onnx_export_info,
    require_onnxruntime,
)
from nlpkit.registry import available_tasks, get_task
from nlpkit.task import Task

__all__ = ["FORMATS", "OPSET", "QUANTIZATIONS", "exportable_tasks", "export_model"]

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
#: The ONNX opset: ORT 1.17+ runs it, and it has LayerNormalization for the exporter.
OPSET = 17


def exportable_tasks() -> list[str]:
    """Tasks whose models export: those that implement :meth:`~nlpkit.task.Task.export_spec`."""
    return [name for name in available_tasks() if get_task(name).export_spec is not Task.export_spec]


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


def _check(task: Any, spec: ExportSpec, exported: Any) -> dict[str, float]:
    """The export against the PyTorch model: the kind's largest output difference on the spec's texts, and the
    agreement of the task's predictions on the spec's check inputs."""
    diff = spec.kind.max_abs_diff(task.model, exported, task.tokenizer, spec.texts(), task.cfg.data.max_length)
    with torch.inference_mode():
        reference = task.predict(list(spec.check_inputs), **spec.predict_kwargs)
        torch_model, task.model = task.model, exported
        try:
            got = task.predict(list(spec.check_inputs), **spec.predict_kwargs)
        finally:
            task.model = torch_model
    return {"max_abs_diff": diff, spec.agreement_name: float(spec.agreement(reference, got))}


def export_model(run: str | Path, out: str | Path, *, format: str = "onnx", quantize: str | None = None,
                 force: bool = False, keep_fp32: str | None = None, optimize: bool = True, opset: int = OPSET,
                 fallback_margin: float | None = None) -> dict[str, Any]:
    """Export the model of ``run`` (a run or model folder of a task that implements
    :meth:`~nlpkit.task.Task.export_spec`) into the folder ``out``; returns the descriptor's ``onnx`` entry.

    ``quantize="int8"``: dynamic int8. ``fallback_margin``: for kinds that support it (a single-label
    classifier), keep the fp32 graph and score again in fp32 the rows whose top-two probability gap is under it
    (default: the task's spec; 0: none). ``keep_fp32``: nodes int8 keeps fp32 (default: the spec's, none with a
    fallback unless the spec keeps them with one; ``""`` quantizes every op). ``optimize=False`` skips the
    transformer fusion. ``force`` (``--overwrite``) replaces an earlier export at ``out``.
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
    spec = task.export_spec()
    if spec is None:
        raise UsageError(f"{run} is a {task.name} model, which this {task.name} model's task does not export.")
    kind = spec.kind
    if fallback_margin and not (kind.supports_fallback and spec.no_fallback_reason is None):
        why = spec.no_fallback_reason or f"its export ({kind.name}) has no fp32 fallback for close calls"
        raise UsageError(f"--fallback-margin: {run} is a {task.name} model: {why}. Export without it.")
    if fallback_margin is None:  # the spec's default (a single-label classifier's int8 export falls back)
        fallback_margin = (spec.fallback_margin or 0.0) if quantize and kind.supports_fallback else 0.0
    if keep_fp32 is None:  # the spec's sensitive nodes stay fp32, unless a fallback rescores close calls in fp32
        keep_fp32 = "" if fallback_margin and not spec.keep_fp32_with_fallback else spec.keep_fp32
    entry: dict[str, Any] = {"format": "onnx", "kind": kind.name, "precision": quantize or "fp32",
                             "source": str(src_path), "opset": opset, "onnxruntime": ort.__version__,
                             "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        entry.update(kind.export(task.model, tmp, opset, optimize))
        if quantize:
            quantized = []
            for name in entry["graphs"]:
                fp32 = tmp / f"fp32-{name}"
                (tmp / name).rename(fp32)
                quantized.append(_quantize(fp32, tmp / name, keep_fp32, op_types=kind.quantize_ops))
                if fallback_margin and name == ONNX_FILE:
                    fp32.rename(tmp / FALLBACK_FILE)
                    entry["fallback"] = {"file": FALLBACK_FILE, "margin": fallback_margin}
                else:
                    fp32.unlink()
            entry["quantization"] = {**quantized[0], "nodes_kept_fp32": sum(q["nodes_kept_fp32"] for q in quantized)}
        task.tokenizer.save_pretrained(tmp)
        kind.write_files(task.model, tmp)
        task.write_descriptor(tmp, **{DESCRIPTOR_KEY: entry})  # the kind's open() may read the fallback entry
        entry["check"] = check = _check(task, spec, kind.open(tmp))
        if not quantize and check["max_abs_diff"] > spec.fp32_tolerance:
            raise RuntimeError(f"The fp32 ONNX export differs from the PyTorch model by {check['max_abs_diff']:.2e} "
                               f"in its outputs (more than {spec.fp32_tolerance}); try --no-optimize. Nothing was "
                               f"written.")
        agreement = check[spec.agreement_name]
        if quantize and agreement < spec.min_int8_agreement:
            raise UsageError(f"--quantize int8 changes what this {task.name} model predicts: {agreement:.0%} "
                             f"{spec.agreement_name} with PyTorch on the check inputs (at least "
                             f"{spec.min_int8_agreement:.0%} needed; max |output diff| {check['max_abs_diff']:.2g})."
                             f" {spec.int8_hint} Nothing was written.")
        task.write_descriptor(tmp, **{DESCRIPTOR_KEY: entry})
    return entry
