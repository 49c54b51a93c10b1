"""LoRA adapters (peft) for every transformer task: wrapping a model, finding a saved adapter's
base and merging adapters (a saved adapter is opened by :func:`nlpkit.loader.load`).

A LoRA run saves only the adapter (``adapter_config.json`` + ``adapter_model.safetensors``, plus the tokenizer and
nlpkit's descriptor) into ``model/``; plain peft loads it with ``AutoPeftModelFor...from_pretrained(run/model)``,
which finds the base model at the ``base_model_name_or_path`` the adapter records (for a catalog model, its local
cache folder). With ``lora.merge=true`` the adapters are folded into the base weights and a plain model is saved.

Task types are peft's ``TaskType`` names: ``SEQ_CLS`` (classification: the new head is trained in full and saved
beside the adapters, peft's ``modules_to_save``), ``SEQ_2_SEQ_LM`` and ``CAUSAL_LM``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlpkit.artifacts import inside, read_descriptor
from nlpkit.config import LoraOptions, model_name
from nlpkit.errors import ConfigError, ModelNotFoundError, UsageError
from nlpkit.modeling import resolve_model

__all__ = [
    "TASK_TYPES",
    "adapter_base",
    "adapter_task_type",
    "apply_lora",
    "check_trainable",
    "is_adapter_dir",
    "is_peft_model",
    "merge_lora",
    "new_modules",
    "trainable_parameters",
]

TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "FEATURE_EXTRACTION")
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """True when ``path`` holds a PEFT adapter (``adapter_config.json``) rather than a full model."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def is_peft_model(model: Any) -> bool:
    """True for a model wrapped with adapters (a ``PeftModel``)."""
    return hasattr(model, "peft_config")


def adapter_task_type(path: str | Path) -> str | None:
    """The peft task type an adapter folder was saved with (``SEQ_CLS``, ``SEQ_2_SEQ_LM``, ``CAUSAL_LM``)."""
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text()).get("task_type")


def adapter_base(path: str | Path, base_model: str | None = None) -> str:
    """The base model of a saved adapter, first found of: ``base_model``; the folder peft recorded, if it is on
    this machine; the ``model.name`` of the nlpkit run that saved the adapter (its descriptor: a catalog name or
    hub id still works when the recorded cache path is gone); peft's record as a hub id.

    A relative folder the adapter records is read inside the adapter's folder (where a run that ships its base
    keeps it), and must stay there (:func:`nlpkit.artifacts.inside`); it is loaded, like any model folder,
    through :func:`nlpkit.loader.load`, which refuses a base that ships its own code."""
    path = Path(path)
    if base_model:
        return resolve_model(base_model)
    recorded = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if isinstance(recorded, str) and recorded and not recorded.startswith(("/", "~")) and (path / recorded).exists():
        return resolve_model(str(inside(path, recorded)))
    if recorded and Path(recorded).expanduser().exists():
        return resolve_model(recorded)
    descriptor = read_descriptor(path)
    if descriptor is not None and model_name(descriptor.config):
        trained_from = resolve_model(model_name(descriptor.config))
        if Path(trained_from).resolve() != path.resolve():  # a reloaded adapter saved again names itself
            return trained_from
    if not recorded:
        raise ModelNotFoundError(f"{path}/{ADAPTER_CONFIG} names no base model; pass base_model=...")
    if recorded.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"The base model of adapter {path} ({recorded}) is not on this machine; pass "
                                 f"base_model=<catalog name | folder | hub id>.")
    return resolve_model(recorded)


def check_trainable(cfg: Any) -> None:
    """Refuse to train quantized weights in full: with ``model.quantization`` only LoRA adapters can train
    (QLoRA). Called when a training loop is set up, before any data is read."""
    if cfg.model.quantization != "none" and not cfg.train.lora:
        raise ConfigError(f"model.quantization={cfg.model.quantization} freezes the base weights in "
                          f"{cfg.model.quantization}: training needs train.lora=true (QLoRA), or drop "
                          f"model.quantization to fine-tune every weight.")


def new_modules(loading_info: dict[str, Any]) -> list[str]:
    """The modules ``from_pretrained`` initialised afresh (missing from the checkpoint or resized: a new
    classification head), from its ``output_loading_info``; they must train in full under LoRA."""
    keys = list(loading_info.get("missing_keys") or [])
    keys += [k[0] if isinstance(k, (tuple, list)) else k for k in loading_info.get("mismatched_keys") or []]
    return sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})


def apply_lora(model: Any, options: LoraOptions | None = None, task_type: str = "CAUSAL_LM", *,
               modules_to_save: Sequence[str] | None = None, gradient_checkpointing: bool = False) -> Any:
    """Wrap ``model`` with fresh LoRA adapters; only the adapters (and ``modules_to_save``) stay trainable.

    ``options``: the ``lora.*`` section (rank, alpha, dropout, target modules; its ``modules_to_save``, when
    set, wins over the argument). A model loaded quantized (``model.quantization``) is first prepared for
    k-bit training (peft's ``prepare_model_for_kbit_training``: norms in float32, inputs that require grad).
    """
    from peft import LoraConfig, TaskType, get_peft_model

    o = options or LoraOptions()
    if task_type not in TASK_TYPES:
        raise UsageError(f"task_type={task_type!r}: expected one of {', '.join(TASK_TYPES)}.")
    targets: Any = list(o.target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    save = list(o.modules_to_save) if o.modules_to_save else (list(modules_to_save) if modules_to_save else None)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(task_type=TaskType[task_type], r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout,
                        target_modules=targets, modules_to_save=save)
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # unknown module names: list what exists
        import torch

        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"lora.target_modules={list(o.target_modules)!r} matches no layer of this model ({err}). "
                          f"Its linear layers are: {names}.") from err


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts of ``model``."""
    if is_peft_model(model):
        return model.get_nb_trainable_parameters()
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def merge_lora(model: Any) -> Any:
    """Fold a ``PeftModel``'s adapters into the base weights and return the plain transformers model (a
    classifier keeps the head it trained in full)."""
    if not is_peft_model(model):
        raise UsageError("merge_lora needs a PEFT (LoRA) model; this one has no adapters.")
    return model.merge_and_unload()
