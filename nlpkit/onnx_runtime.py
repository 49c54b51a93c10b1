"""Run an exported ONNX model with ONNX Runtime as a drop-in for the PyTorch model at prediction time.

``nlpkit export`` (:mod:`nlpkit.export`) writes a folder with ``model.onnx``, the tokenizer, ``config.json`` and
the nlpkit descriptor, whose ``onnx`` entry says how it was made. :func:`onnx_export_info` recognises such a
folder; :class:`OnnxModel` opens it with ONNX Runtime and answers ``model(input_ids=..., attention_mask=...)``
with an object whose ``.logits`` is a tensor, like a transformers model, so a task's ``predict`` (its
length-sorted batching and post-processing) runs unchanged on either.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import torch

from nlpkit.artifacts import check_links_inside, inside, read_descriptor
from nlpkit.errors import ConfigError, ModelNotFoundError, UnsafeFileError, UsageError
from nlpkit.modeling import pretrained

__all__ = ["CLASSIFIER", "ONNX_FILE", "EncoderKind", "ExportKind", "ExportSpec", "OnnxModel", "export_kinds",
           "get_export_kind", "onnx_export_info", "open_session", "require_onnxruntime", "same_share",
           "session_options"]

#: The model file inside an exported folder.
ONNX_FILE = "model.onnx"
#: The fp32 graph an int8 export keeps for close calls (``nlpkit export --fallback-margin``).
FALLBACK_FILE = "fallback.onnx"
#: The descriptor entry that marks an exported folder (its value: format, precision, source run, ...).
DESCRIPTOR_KEY = "onnx"
INSTALL_HINT = "pip install 'nlpkit-hf[onnx]' (or: pip install onnxruntime onnx)"


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a :class:`ConfigError` with the install command."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError(f"ONNX export and inference need onnxruntime, which is not installed: {INSTALL_HINT}."
                          ) from err
    return onnxruntime


def onnx_export_info(path: str | Path) -> dict[str, Any] | None:
    """The ``onnx`` entry of the descriptor of an exported folder (``nlpkit export``), else None."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return None
    found = read_descriptor(p)
    entry = found.extra.get(DESCRIPTOR_KEY) if found is not None else None
    return entry if isinstance(entry, dict) else None


def open_session(path: str | Path, options: Any) -> Any:
    """An ONNX Runtime CPU session of the graph at ``path``. ONNX Runtime's refusals (external weights that
    escape the export folder, a file that is not an ONNX graph) become one line naming the file: an
    :class:`~nlpkit.errors.UnsafeFileError` or a :class:`~nlpkit.errors.ModelNotFoundError`."""
    ort = require_onnxruntime()
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        if not type(err).__module__.startswith("onnxruntime"):
            raise
        # "[ONNXRuntimeError] : 1 : FAIL : <what>": keep what ONNX Runtime says, on one line
        what = " ".join(str(err).split(" : ", 3)[-1].split())
        if "external data" in what.lower() and ("escape" in what.lower() or "outside" in what.lower()):
            raise UnsafeFileError(f"Refusing to load {path}: its weights are stored in a file outside the export "
                                  f"folder, and nlpkit reads only what an export holds (ONNX Runtime: {what}). "
                                  f"Export the run again with `nlpkit export`.") from err
        raise ModelNotFoundError(f"{path} cannot be loaded by ONNX Runtime ({type(err).__name__}: {what}). Export "
                                 f"the run again with `nlpkit export`.") from err


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads (default: torch's, which follows
    ``OMP_NUM_THREADS`` / ``torch.set_num_threads``), one inter-op thread, every graph optimisation."""
    ort = require_onnxruntime()
    if threads is not None and threads < 1:
        raise UsageError(f"threads={threads}: expected a positive number of CPU threads (or None for torch's).")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # the graph is one chain of ops: parallelism is inside each op
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxModel:
    """An ONNX Runtime session behind the calling convention of a transformers model.

    ``model(input_ids=ids, attention_mask=mask)`` returns an object with one tensor attribute per ONNX output
    (``.logits``). Inputs the graph declares but the caller does not pass (``token_type_ids`` of BERT) are
    zeros, as transformers fills them. ``config`` is the model's transformers config (labels, problem type).

    An int8 export made with a fallback (its descriptor's ``fallback`` entry, or ``fallback=``) also opens the
    fp32 graph: rows whose softmax top-two gap is under ``margin`` are scored again by it and get its logits.
    """

    def __init__(self, folder: str | Path, threads: int | None = None, fallback: dict[str, Any] | None = None,
                 trust_remote_code: bool = False):
        from transformers import AutoConfig

        require_onnxruntime()  # the install hint before anything else
        self.folder = Path(folder)
        check_links_inside(self.folder)  # graphs and their external weights: only what the export holds
        path = inside(self.folder, ONNX_FILE)
        if not path.is_file():
            raise UsageError(f"{self.folder} has no {ONNX_FILE}: export one with `nlpkit export RUN --out "
                             f"{self.folder}`.")
        self.config = pretrained(AutoConfig, self.folder, trust_remote_code=trust_remote_code)
        fallback = fallback or (onnx_export_info(self.folder) or {}).get("fallback")
        self._paths = (path, inside(self.folder, fallback["file"]) if fallback else None)
        #: The probability gap below which a row is a close call for the fp32 fallback (or None).
        self.margin = float(fallback["margin"]) if fallback else None
        self._threads = threads
        self._open_sessions()
        #: Where inputs must be: ONNX Runtime's CPU provider reads host memory.
        self.device = torch.device("cpu")

    def _open_sessions(self) -> None:
        # With a fallback, two sessions share the cores, each with its own intra-op pool. A pool's threads spin
        # after every run, so when the graphs alternate (the close calls of every batch, as in a server's merged
        # batches) one spinning pool takes the cores the other one needs. Neither spins then: measured on random
        # groups of 64 texts on 2 cores, 363-423 texts/s without spinning vs 276-318 with it (rounds rotated).
        options = session_options(self._threads)
        path, fallback_path = self._paths
        if fallback_path is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = open_session(path, options)
        #: The fp32 session for close calls (or None).
        self.fallback = open_session(fallback_path, options) if fallback_path is not None else None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def threads(self) -> int | None:
        """ONNX Runtime's intra-op threads (None: torch's). Setting another number opens the sessions again
        with it (:func:`nlpkit.loader.place`, ``nlpkit.pipeline(..., threads=N)``, ``nlpkit serve``)."""
        return self._threads

    @threads.setter
    def threads(self, threads: int | None) -> None:
        if threads != self._threads:
            session_options(threads)  # a bad count is refused before the open sessions are dropped
            self._threads = threads
            self._open_sessions()

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 fallback: bool = True, **inputs: torch.Tensor) -> SimpleNamespace:
        """Run the graph. With a fallback, close calls get the fp32 graph's logits, unless ``fallback=False``:
        then the caller re-scores them itself, e.g. gathered across batches (:meth:`close_calls`,
        :meth:`run_fallback`)."""
        feeds = self._feeds(input_ids, attention_mask, inputs)
        outputs = self.session.run(self.output_names, feeds)
        if self.fallback is not None and fallback:
            outputs = self._rescore_close_calls(feeds, outputs)
        return self._as_outputs(outputs)

    def run_fallback(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **inputs: torch.Tensor) -> SimpleNamespace:
        """Run the fp32 fallback graph alone (an int8 export made with ``--fallback-margin``)."""
        if self.fallback is None:
            raise UsageError(f"{self.folder} has no fp32 fallback graph: export with --fallback-margin.")
        return self._as_outputs(self.fallback.run(self.output_names, self._feeds(input_ids, attention_mask, inputs)))

    def close_calls(self, logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """Indices of the rows whose best two probabilities are within the fallback's margin (none without a
        fallback, or with one score per row)."""
        logits = torch.as_tensor(logits)
        if self.margin is None or logits.ndim != 2 or logits.shape[-1] < 2:
            return np.zeros(0, dtype=np.int64)
        best = logits.float().softmax(-1).topk(2, dim=-1).values
        return torch.nonzero(best[:, 0] - best[:, 1] < self.margin).flatten().numpy()

    def _as_outputs(self, outputs: list[np.ndarray]) -> SimpleNamespace:
        return SimpleNamespace(**{n: torch.from_numpy(o) for n, o in zip(self.output_names, outputs)})

    def _feeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        feeds = {}
        for name in self.input_names:
            value = given.get(name)
            feeds[name] = (value.cpu().numpy() if value is not None
                           else torch.zeros_like(input_ids).numpy())  # token_type_ids: one segment
        return feeds

    def _rescore_close_calls(self, feeds: dict[str, np.ndarray], outputs: list[np.ndarray]) -> list[np.ndarray]:
        """Logits of the rows whose best two probabilities are within ``margin`` replaced by the fp32 graph's."""
        close = self.close_calls(outputs[0])
        if close.size:
            redo = self.fallback.run(self.output_names, {k: v[close] for k, v in feeds.items()})
            outputs = [o.copy() for o in outputs]
            for o, r in zip(outputs, redo):
                o[close] = r
        return outputs

    #: An ONNX graph has no training mode; read by code written against torch modules (``nlpkit evaluate``).
    training = False
    #: Marks a model :func:`nlpkit.loader.load` opened from an export (:func:`nlpkit.loader.runs_on_onnx`).
    runs_on_onnx = True

    def eval(self) -> OnnxModel:
        """No-op (an ONNX graph has no training mode); for code written against torch modules."""
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        """``train(False)`` is :meth:`eval`; an export cannot train (a :class:`UsageError`)."""
        if mode:
            raise UsageError(f"{self.folder} is an ONNX export: it predicts and cannot be trained; train from the "
                             f"PyTorch run folder it was exported from.")
        return self

    def to(self, device: Any) -> OnnxModel:
        """Stay on the CPU; any other device is a :class:`UsageError` (the export runs on ONNX Runtime's CPU
        provider)."""
        if torch.device(device).type != "cpu":
            raise UsageError(f"device={device!r}: an exported ONNX model runs on the CPU; use device='cpu' or "
                             f"the PyTorch run folder for a GPU.")
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.folder)!r})"


# --------------------------------------------------------------------------------------------- export kinds


_KINDS: dict[str, ExportKind] = {}


class ExportKind:
    """How one family of models goes to ONNX and comes back: a task's :meth:`~nlpkit.task.Task.export_spec`
    names one, ``nlpkit export`` calls :meth:`export`, and :func:`nlpkit.loader.load` calls :meth:`open` on a
    folder whose descriptor's ``onnx.kind`` is its :attr:`name`.

    A kind registers itself under :attr:`name` when it is created (:func:`get_export_kind`), so a plugin adds one
    by creating it at module level in a module its task imports: no core file names it. Built in:
    :data:`CLASSIFIER` (here) and the generators of :mod:`nlpkit.onnx_generation` (``causal_lm``, ``seq2seq``).
    """

    #: The descriptor's ``onnx.kind``.
    name: str = ""
    #: Whether an int8 export may keep its fp32 graph for close calls (single-label classifiers).
    supports_fallback: ClassVar[bool] = False
    #: Op types int8 quantizes (None: every op ONNX Runtime quantizes dynamically).
    quantize_ops: list[str] | None = None

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("an ExportKind needs a name (the descriptor's onnx.kind)")
        known = _KINDS.get(name)
        if known is not None and type(known) is not type(self):
            raise ValueError(f"ONNX export kind {name!r} is already defined by {type(known).__module__}."
                             f"{type(known).__qualname__}")
        self.name = name
        _KINDS[name] = self

    def export(self, model: Any, folder: Path, opset: int, optimize: bool) -> dict[str, Any]:
        """Write the graph(s) of ``model`` (fp32, on the CPU, eval mode) into ``folder``; return what the
        descriptor records: at least ``graphs`` (file names, which int8 quantizes one by one)."""
        raise NotImplementedError

    def open(self, folder: str | Path, *, threads: int | None = None, trust_remote_code: bool = False) -> Any:
        """The exported model at ``folder`` as the task's ``predict`` calls it (it must set ``runs_on_onnx =
        True``, honour ``.to("cpu")`` and a settable ``threads``)."""
        raise NotImplementedError

    def max_abs_diff(self, model: Any, exported: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
        """The largest absolute difference between the outputs of the PyTorch ``model`` and of ``exported`` on
        ``texts`` (the fp32 export's tolerance check)."""
        raise NotImplementedError

    def write_files(self, model: Any, folder: Path) -> None:
        """Files the export needs beside the graphs and the tokenizer (default: ``config.json``)."""
        model.config.save_pretrained(folder)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def get_export_kind(name: str, folder: str | Path | None = None) -> ExportKind:
    """The export kind registered as ``name``; an unknown one is a :class:`~nlpkit.errors.UsageError` naming
    ``folder`` (an export made by a plugin that is not installed here)."""
    if name in _KINDS:
        return _KINDS[name]
    where = f"{folder} is an ONNX export of kind {name!r}, which" if folder else f"ONNX export kind {name!r}"
    raise UsageError(f"{where} no installed task plugin defines (known kinds: {', '.join(sorted(_KINDS))}). "
                     f"Install the plugin that exported it, or export the run again.")


def export_kinds() -> dict[str, ExportKind]:
    """Every export kind defined so far (built-ins, and those of the plugins imported), by name."""
    return dict(_KINDS)


def same_share(reference: list[Any], exported: list[Any]) -> float:
    """The share of predictions that are equal (the default agreement of :class:`ExportSpec`)."""
    if not reference:
        return 1.0
    return sum(a == b for a, b in zip(reference, exported)) / len(reference)


@dataclass
class ExportSpec:
    """How a task's model exports (:meth:`nlpkit.task.Task.export_spec`): the kind of graph, the task's own check
    inputs, and how a prediction of the PyTorch model and of the export are compared."""

    #: How the graph is made and opened again.
    kind: ExportKind
    #: Inputs :meth:`~nlpkit.task.Task.predict` runs on the PyTorch model and on the export.
    check_inputs: list[Any]
    #: (reference predictions, export predictions) -> agreement in [0, 1].
    agreement: Callable[[list[Any], list[Any]], float] = same_share
    #: The agreement's key in the descriptor's ``onnx.check``.
    agreement_name: str = "agreement"
    #: An int8 export whose agreement is under this is refused and nothing is written.
    min_int8_agreement: float = 0.0
    #: Said when an int8 export is refused (what to do instead).
    int8_hint: str = "Export in fp32 (no --quantize)."
    #: Texts tokenized for the tensor check (default: ``check_inputs`` when they are strings).
    check_texts: list[str] | None = None
    #: Extra :meth:`~nlpkit.task.Task.predict` options for the check (e.g. greedy decoding of 16 tokens).
    predict_kwargs: dict[str, Any] = field(default_factory=dict)
    #: The default int8 close-call fallback margin (only for kinds that support it; None or 0: none).
    fallback_margin: float | None = None
    #: Why a fallback cannot be used, when the user asks for one (None: the kind decides).
    no_fallback_reason: str | None = None
    #: Nodes int8 keeps in fp32 (a regular expression on node names), when there is no fallback or
    #: :attr:`keep_fp32_with_fallback` says so.
    keep_fp32: str = ""
    #: Whether :attr:`keep_fp32` holds in an int8 export that keeps its fp32 graph too. A classifier's fallback
    #: scores its close calls again in fp32, so the rest can be int8 throughout (False); a fallback that takes rows
    #: by another rule (an embeddings export's shortest texts) leaves the int8 graph with every other row (True).
    keep_fp32_with_fallback: bool = False
    #: The largest output difference the fp32 export may have from PyTorch on :attr:`check_texts`.
    fp32_tolerance: float = 1e-3

    def texts(self) -> list[str]:
        """The texts of the tensor check."""
        if self.check_texts is not None:
            return list(self.check_texts)
        return [x for x in self.check_inputs if isinstance(x, str)]


class EncoderKind(ExportKind):
    """Any encoder-style graph: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model takes
    them, filled with zeros) -> the named ``outputs``, each with its dynamic axes (``{"logits": {0: "batch"}}``
    for a sequence classifier, ``{0: "batch", 1: "sequence"}`` per token). Exported with ``torch.onnx.export``
    (eager attention, which ONNX Runtime's transformer optimizer fuses: :meth:`fuse`), opened as
    :class:`OnnxModel`. Override :meth:`module` to export a wrapper (pooling inside the graph)."""

    def __init__(self, name: str, outputs: dict[str, dict[int, str]], *, supports_fallback: bool = False,
                 fuse: bool = True) -> None:
        super().__init__(name)
        self.outputs = dict(outputs)
        self.supports_fallback = supports_fallback  # type: ignore[misc]
        self.fuse_graph = fuse

    def module(self, model: Any) -> torch.nn.Module:
        """The module traced: ``model`` itself (its first outputs get the names of :attr:`outputs`)."""
        return model

    def export(self, model: Any, folder: Path, opset: int, optimize: bool) -> dict[str, Any]:
        path = folder / ONNX_FILE
        if hasattr(model, "set_attn_implementation"):
            # Eager attention exports as MatMul/Softmax, the pattern ONNX Runtime fuses into its Attention
            # kernel; the SDPA path exports to a graph it does not fuse (about 25% slower here).
            model.set_attn_implementation("eager")
        ids = torch.ones((2, 8), dtype=torch.long)
        dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                   **self.outputs}
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter warns that it is deprecated in favour of dynamo=True, which needs
            # onnxscript and gives a graph the transformer optimizer does not fuse yet.
            warnings.simplefilter("ignore")
            torch.onnx.export(self.module(model).eval(), (ids, torch.ones_like(ids)), str(path),
                              input_names=["input_ids", "attention_mask"], output_names=list(self.outputs),
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False)
        fused = self.fuse(path, model.config) if optimize and self.fuse_graph else False
        return {"graphs": [ONNX_FILE], "fused": fused}

    @staticmethod
    def fuse(path: Path, config: Any) -> bool:
        """Fuse the transformer blocks of the graph at ``path`` in place (ONNX Runtime's optimizer); False when
        the graph has no fusable attention (it is then kept as exported)."""
        from onnxruntime.transformers.optimizer import optimize_model

        heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
        if not heads or not hidden:
            return False
        optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        if not optimized.get_fused_operator_statistics().get("Attention"):
            return False
        optimized.save_model_to_file(str(path))
        return True

    def open(self, folder: str | Path, *, threads: int | None = None, trust_remote_code: bool = False) -> Any:
        return OnnxModel(folder, threads=threads, trust_remote_code=trust_remote_code)

    def max_abs_diff(self, model: Any, exported: Any, tokenizer: Any, texts: list[str], max_length: int) -> float:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        with torch.inference_mode():
            ref = self.module(model)(**inputs)
        got = exported(**inputs)
        diff = 0.0
        for i, name in enumerate(self.outputs):
            want = ref[name] if isinstance(ref, dict) or hasattr(ref, "keys") else (
                ref[i] if isinstance(ref, (tuple, list)) else ref)
            have = getattr(got, name)
            mask = enc["attention_mask"].bool()
            if want.dim() >= 2 and want.shape[:2] == mask.shape:  # per-token outputs: padding positions do not count
                want, have = want[mask], have[mask]
            diff = max(diff, float((want.float() - have.float()).abs().max()))
        return diff


#: A sequence classifier (sentiment): ``logits`` per text; int8 may keep the fp32 graph for close calls.
CLASSIFIER = EncoderKind("classifier", {"logits": {0: "batch"}}, supports_fallback=True)
