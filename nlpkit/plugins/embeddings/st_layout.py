"""The sentence-transformers folder layout: what a saved embeddings model holds beside the transformer's weights.

``modules.json`` lists the modules in order (the transformer at the folder's root, ``1_Pooling``, ``2_Normalize``),
``1_Pooling/config.json`` says how token vectors are pooled, ``sentence_bert_config.json`` the maximum sequence
length. sentence-transformers reads these to rebuild the same encoder; nlpkit reads them (JSON only, never code)
to pool a sentence-transformers model the way its authors did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nlpkit.artifacts import atomic_write, inside
from nlpkit.errors import ModelNotFoundError

__all__ = ["StModules", "read_st_modules", "write_st_modules"]

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
#: 1_Pooling/config.json keys -> nlpkit's pooling names (the modes nlpkit computes).
_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


@dataclass
class StModules:
    """What a folder's sentence-transformers modules say (``pooling`` None: no such modules)."""

    pooling: str | None = None
    normalize: bool = False


def read_st_modules(folder: str | Path) -> StModules:
    """The pooling and normalisation of the sentence-transformers folder ``folder`` (a plain folder, hub id or
    one without ``modules.json``: ``StModules()``). A pooling nlpkit does not compute (weighted mean, several
    modes at once) is a :class:`~nlpkit.errors.ModelNotFoundError` naming it."""
    folder = Path(folder)
    listing = folder / "modules.json"
    if not listing.is_file():
        return StModules()
    try:
        modules = json.loads(listing.read_text(encoding="utf-8"))
        types = [m["type"] for m in modules]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelNotFoundError(f"{listing} is not a sentence-transformers module list ({err}).") from err
    found = StModules(normalize=_NORMALIZE in types)
    for module in modules:
        if module["type"] != _POOLING:
            continue
        config = inside(folder, str(module.get("path") or "")) / "config.json"
        settings = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
        on = [mode for key, mode in _MODES.items() if settings.get(key)]
        other = [k for k, v in settings.items() if k.startswith("pooling_mode_") and v and k not in _MODES]
        if len(on) != 1 or other:
            raise ModelNotFoundError(f"{config}: pooling {on + other or 'none'} is not one nlpkit computes (one of "
                                     f"mean, cls, max); set pooling=mean|cls|max to pool this model otherwise.")
        found.pooling = on[0]
    unknown = [t for t in types if t not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unknown:
        raise ModelNotFoundError(f"{listing} lists module(s) nlpkit does not run ({', '.join(unknown)}): their "
                                 f"vectors would differ from sentence-transformers'. Use a model made of a "
                                 f"transformer, pooling and (optionally) normalisation.")
    return found


def write_st_modules(folder: str | Path, *, pooling: str, normalize: bool, dimension: int, max_length: int) -> None:
    """Write the sentence-transformers files of a model saved (transformer + tokenizer) in ``folder``."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": _TRANSFORMER},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": _POOLING}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": _NORMALIZE})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling_config = {"word_embedding_dimension": dimension, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
                      "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                      "pooling_mode_lasttoken": False, "include_prompt": True}

    def dump(value: object) -> str:
        return json.dumps(value, indent=2) + "\n"

    atomic_write(folder / "modules.json", dump(modules), root=folder)
    atomic_write(folder / "1_Pooling" / "config.json", dump(pooling_config), root=folder)
    atomic_write(folder / "sentence_bert_config.json", dump({"max_seq_length": max_length, "do_lower_case": False}),
                 root=folder)
    atomic_write(folder / "config_sentence_transformers.json",
                 dump({"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}), root=folder)
