"""The one place that opens a model's weights: whatever a folder holds, a task's ``build_model`` calls
:func:`load` and gets a model it can predict with.

What a model name can point at, and what :func:`load` opens for it:

* a folder written by ``nlpkit export``: opened by the export kind its descriptor names
  (:class:`~nlpkit.onnx_runtime.ExportKind`, defined by the core or by the task's plugin): a classifier's graph as
  :class:`~nlpkit.onnx_runtime.OnnxModel` (an int8 export's fp32 fallback for close calls lives inside it), a
  causal LM's or encoder-decoder's graphs as the transformers-compatible generators of
  :mod:`nlpkit.onnx_generation`, a plugin's kind as that plugin opens it;
* a LoRA run's ``model/`` (a peft adapter): its base model, then the adapter on top (a ``PeftModel``);
* a run's ``model/``, a model folder, a catalog name or a hub id: the weights, with the ``model.*`` section's
  dtype and quantization (a quantized base through bitsandbytes).

Every ``from_pretrained`` goes through :func:`nlpkit.modeling.pretrained` (the remote-code check and an explicit
``trust_remote_code``). :func:`place` then puts a loaded model where it predicts (device, ONNX Runtime threads),
so ``nlpkit.pipeline``, ``predict``, the demos, ``nlpkit evaluate`` and the server never ask which runtime they
hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nlpkit.artifacts import read_descriptor
from nlpkit.config import ModelConfig
from nlpkit.errors import UsageError
from nlpkit.lora import adapter_base, is_adapter_dir
from nlpkit.modeling import load_kwargs, pretrained
from nlpkit.onnx_generation import GENERATOR_KINDS  # noqa: F401 - defines the generators' export kinds
from nlpkit.onnx_runtime import CLASSIFIER, get_export_kind, onnx_export_info

__all__ = ["config_folder", "load", "place", "runs_on_onnx"]


def load(auto_class: Any, path: str, model: ModelConfig | None = None, *, base_model: str | None = None,
         output_loading_info: bool = False, on_weights: Callable[[Any], None] | None = None,
         **kwargs: Any) -> Any:
    """The model at ``path`` (already resolved: :func:`nlpkit.modeling.resolve_model`), opened as what it is.

    ``auto_class`` is the transformers class of the task's PyTorch weights (``AutoModelForSequenceClassification``,
    ...); ``model`` the ``model.*`` section (dtype, quantization, ``trust_remote_code``, revision, attention kernel:
    :func:`nlpkit.modeling.load_kwargs`); ``kwargs`` go to ``from_pretrained`` on top (``num_labels``, ...).

    * An ``nlpkit export`` folder opens on ONNX Runtime (the export's own labels and precision: ``kwargs`` that
      would change the weights do not apply, and a ``model.dtype`` other than the exported run's is an error).
    * A LoRA adapter folder loads its base model (``base_model``, else the one the adapter records:
      :func:`nlpkit.lora.adapter_base`), calls ``on_weights(base)`` (e.g. to give the tokenizer a pad token
      and resize the base's embeddings before the adapter, sized for them, goes on), then puts the adapter on top.
    * Anything else is ``pretrained(auto_class, path, ...)``, then ``on_weights(model)``.

    With ``output_loading_info``, ``(model, loading_info)``: transformers' record of the weights it initialised
    afresh (a new classification head), empty for an export or an adapter (nothing new: the adapter holds it).
    """
    options = {**(load_kwargs(model) if model is not None else {}), **kwargs}
    trust = bool(options.get("trust_remote_code", False))
    if onnx_export_info(path) is not None:
        _check_export_dtype(path, model)
        # exports older than export kinds have none: they are classifiers
        kind = get_export_kind((onnx_export_info(path) or {}).get("kind") or CLASSIFIER.name, path)
        opened = kind.open(path, trust_remote_code=trust)
        return (opened, {}) if output_loading_info else opened
    if is_adapter_dir(path):
        from peft import PeftModel

        # the base folder is checked for its own code as any model folder is (it may ship inside the run)
        base = pretrained(auto_class, adapter_base(path, base_model), **options)
        if on_weights is not None:
            on_weights(base)
        adapted = PeftModel.from_pretrained(base, path)  # adapter weights (safetensors) and adapter_config.json
        return (adapted, {}) if output_loading_info else adapted
    loaded = pretrained(auto_class, path, output_loading_info=output_loading_info, **options)
    if on_weights is not None:
        on_weights(loaded[0] if output_loading_info else loaded)
    return loaded


def config_folder(path: str, base_model: str | None = None) -> str:
    """Where the ``config.json`` of the weights at ``path`` is: an adapter's base model, else ``path`` itself."""
    return adapter_base(path, base_model) if is_adapter_dir(path) else path


def runs_on_onnx(model: Any) -> bool:
    """True for a model :func:`load` opened from an ``nlpkit export`` (ONNX Runtime, CPU only)."""
    return getattr(model, "runs_on_onnx", False) is True  # what every export kind's model declares


def place(model: Any, device: str | None = None, threads: int | None = None) -> Any:
    """Put a model :func:`load` opened where it predicts, and return it.

    ``device`` defaults to the first GPU if there is one, else the CPU; an export runs on ONNX Runtime's CPU
    provider (default CPU; another device is a :class:`~nlpkit.errors.UsageError`) with ``threads`` intra-op
    threads (default: torch's). Weights quantized by bitsandbytes are placed when loaded and stay there, and a
    model that is not a module (word vectors) has no device.
    """
    if runs_on_onnx(model):
        if threads is not None:
            model.threads = threads  # its sessions open (again) with this many threads
        return model.to(device or "cpu")
    if not hasattr(model, "to") or getattr(model, "is_quantized", False):
        return model
    import torch

    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _check_export_dtype(path: str, model: ModelConfig | None) -> None:
    """Refuse a ``model.dtype`` other than the one the exported run was loaded with: an export's precision was
    fixed when it was exported."""
    if model is None:
        return
    found = read_descriptor(path)
    saved = ((found.config or {}).get("model") or {}) if found is not None else {}
    exported = ModelConfig(dtype=saved.get("dtype", "auto")).dtype if isinstance(saved, dict) else "auto"
    if model.dtype != exported:
        precision = (onnx_export_info(path) or {}).get("precision")
        raise UsageError(f"model.dtype={model.dtype!r}: {path} is an ONNX export, whose precision was fixed when it "
                         f"was exported ({precision}); leave dtype out (or run the PyTorch run folder).")

