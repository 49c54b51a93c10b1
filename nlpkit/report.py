"""The one report writer: report.json, report.md, plots and the model card, for every task.

Everything is written to a temporary name and renamed into place, so an interrupted run never leaves a
half-written report behind.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpkit.artifacts import atomic_file, atomic_write, make_dir
from nlpkit.config import model_name, to_dict

if TYPE_CHECKING:
    from nlpkit.task import RunResults, Task

_PACKAGES = ("nlpkit-hf", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers", "gensim",
             "sacrebleu", "peft", "scikit-learn")


def json_safe(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively; everything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def _scalars(metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.1f}"
        # Four decimals at most, without padding zeros (8.14, not 8.1400).
        return f"{v:.4f}".rstrip("0").rstrip(".") if math.isfinite(v) else str(v)
    return str(v)


#: Characters that must not reach a written report: C0/C1 controls but tab and newline, DEL, and the Unicode
#: line and paragraph separators. Python's ``splitlines`` (and so ``site``'s reading of a ``.pth`` file) and
#: many viewers treat several of them (``\r``, ``\x0b``, ``\x0c``, ``\x1c``-``\x1e``, ``\x85``, U+2028/9) as
#: line breaks, so a label holding one could start a line of its own choosing.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: str) -> str:
    """``text`` with every control character but tab and newline shown as its escape (``\\r``, ``\\x00``,
    ``\\u2028``): what report.md and the model card say about data and descriptors (label and task names,
    paths) is read, never interpreted. The one sanitizer of the report writer."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def md_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- plots


def plot_learning_curve(history: list[dict[str, Any]], path: Path, metric: str) -> bool:
    """Training loss (and the validation metric) against updates. Returns False when there is nothing to plot."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h[f"eval_{metric}"]) for h in history if f"eval_{metric}" in h]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="training loss", color="tab:blue")
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("training loss")
    if evals:
        ax2 = ax.twinx() if metric != "loss" else ax
        ax2.plot(*zip(*evals), "o-", color="tab:orange", label=f"validation {metric}")
        ax2.set_ylabel(f"validation {metric}")
        if ax2 is not ax:
            ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically (:func:`~nlpkit.artifacts.atomic_file`) and close it (for task plots)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------------- model card


def hub_reference(name: Any) -> str | None:
    """What a config's model or data name is on the Hugging Face hub: a catalog entry's hub id, a hub id as
    given, or (for a previous nlpkit run) what that run started from; None for local files and built models."""
    from nlpkit import assets
    from nlpkit.artifacts import read_descriptor

    if not isinstance(name, str) or not name or name == "scratch" or "," in name:
        return None
    if assets.is_catalog_name(name):
        return assets.hub_id(name)
    path = Path(name).expanduser()
    if path.exists():
        found = read_descriptor(path)
        return hub_reference(model_name(found.config)) if found else None
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    return name  # a hub id ("gpt2", "org/name")


DISTRIBUTION = "nlpkit-hf"  # nlpkit's name on the package index (the import name is nlpkit)


def model_card(task: Task, report: dict[str, Any], dataset_name: str) -> str:
    """The model card (``README.md`` of ``model/``), built with ``huggingface_hub.ModelCard``: metadata with
    ``base_model`` and ``datasets`` as hub ids where known, a ``model-index`` of the test results, and a summary."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    test = _scalars(report.get("test"))
    skip = {"samples", "runtime_s", "samples_per_s"}
    base = hub_reference(model_name(report["config"]))
    data_id = hub_reference(dataset_name)
    name = Path(report["run_dir"]).name
    results = [EvalResult(task_type=task.hub_task_type or task.name, task_name=task.name,
                          dataset_type=data_id or dataset_name, dataset_name=dataset_name, dataset_split="test",
                          metric_type=k, metric_name=f"test {k}", metric_value=round(float(v), 4))
               for k, v in test.items() if k not in skip]
    data = ModelCardData(model_name=name, library_name=task.hub_library, pipeline_tag=task.hub_task_type or None,
                         tags=["nlpkit", task.name], base_model=base, datasets=[data_id] if data_id else None,
                         eval_results=results or None)
    training = report.get("training") or {}
    started_from = f"`{base}`" if base else f"`{model_name(report['config'])}`"
    body = "\n".join([
        f"# {name}",
        "",
        f"A **{task.name}** model trained with nlpkit (Python package `{DISTRIBUTION}`, imported as `nlpkit`) "
        f"from {started_from} on `{dataset_name}`.",
        "",
        "## Test results",
        "",
        md_table([(k, v) for k, v in test.items() if k not in skip], ["metric", "value"]) if test else "(none)",
        "",
        "## Training",
        "",
        md_table(list(training.items()), ["setting", "value"]) if training else "",
        "",
        "## How to use",
        "",
        "```python",
        "import nlpkit",
        "predict = nlpkit.pipeline(\"path/to/this/folder\")",
        f"print(predict({task.usage_example!r}))",
        "```",
        "",
        "The full configuration is in `nlpkit_task.json`; the run's report.md has plots and more numbers.",
        "",
    ])
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body))


# ------------------------------------------------------------------------------------------------- report


def write_report(run_dir: Path, task: Task, results: RunResults, root: Path | None = None) -> dict[str, Any]:
    """Write report.json, report.md, the learning curve, task plots and the model card. Returns the report.

    ``root``: the folder ``run_dir`` belongs to (``nlpkit evaluate``'s report folder inside a run: the run);
    ``run_dir`` is created, and nothing is written, through a link between the two (see
    :func:`~nlpkit.artifacts.check_no_links`). Text from data and descriptors is cleaned of control characters
    (:func:`clean_text`; report.json escapes them as JSON does).
    """
    run_dir = Path(run_dir)
    root = run_dir if root is None else Path(root)
    make_dir(run_dir, root)
    cfg = to_dict(task.cfg)
    report: dict[str, Any] = {
        "task": task.name, "run_dir": str(run_dir), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model": model_name(cfg), "data": cfg.get("data", {}).get("source"),
        "main_metric": task.main_metric,
        "test": results.test, "validation": results.validation,
        "training": results.training, "data_sizes": results.data_sizes,
        "data_notes": results.notes, "stop_reason": results.stop_reason,
        "best": {"metric": task.main_metric, "value": results.best_value, "step": results.best_step},
        "history": results.history, "wall_seconds": results.wall_seconds,
        "config": cfg, "versions": versions(), "hardware": hardware(),
    }
    report.update(results.extra)
    metric_for_curve = task.main_metric
    plots: list[tuple[str, str]] = []
    if plot_learning_curve(report["history"], run_dir / "learning_curve.png", metric_for_curve):
        plots.append(("Learning curve", "learning_curve.png"))
    extras = task.report_extras(run_dir, results)

    md = [f"# nlpkit report: {task.name}", "",
          md_table([("task", task.name), ("model", report["model"]), ("data", report["data"]),
                     ("run folder", run_dir), ("finished", report["created"]),
                     ("stop reason", report["stop_reason"]), ("wall time (s)", report["wall_seconds"])],
                    ["", ""]), ""]
    if report["test"]:
        md += ["## Test metrics", "", md_table(sorted(_scalars(report["test"]).items()), ["metric", "value"]), ""]
    if report["validation"]:
        md += ["## Validation metrics", "",
               md_table(sorted(_scalars(report["validation"]).items()), ["metric", "value"]), ""]
    if report["training"]:
        md += ["## Training", "", md_table(list(report["training"].items()), ["", ""]), ""]
    if report["data_sizes"]:
        md += ["## Data", "", md_table(list(report["data_sizes"].items()), ["split", "examples"]), ""]
        if results.notes:
            md += ["Notes: " + "; ".join(f"{k}: {v}" for k, v in results.notes.items()), ""]
    for title, fname in plots:
        md += [f"## {title}", "", f"![{title}]({fname})", ""]
    for title, text in extras:
        md += [f"## {title}", "", text, ""]
    md += ["## Environment", "", md_table(list(report["versions"].items()) + list(report["hardware"].items()),
                                          ["", ""]), ""]

    # ensure_ascii: every control character in report.json is a \uXXXX escape
    atomic_write(run_dir / "report.json", json.dumps(json_safe(report), indent=2, default=str, allow_nan=False,
                                                     ensure_ascii=True), root)
    atomic_write(run_dir / "report.md", clean_text("\n".join(md)), root)
    model_dir = run_dir / "model"
    if model_dir.exists():
        atomic_write(model_dir / "README.md", clean_text(model_card(task, report, str(report["data"]))), root)
    return report


def compare_runs(run_dirs: Sequence[str | Path]) -> tuple[str, dict[str, Any]]:
    """Put several runs' test metrics side by side: (markdown, json-able dict)."""
    runs = []
    for d in run_dirs:
        path = Path(d) / "report.json"
        if not path.exists():
            raise FileNotFoundError(f"{d} has no report.json: is it an nlpkit run folder that finished?")
        runs.append(json.loads(path.read_text()))
    tasks = {r["task"] for r in runs}
    data = {str(r.get("data")) for r in runs}
    metrics = sorted({k for r in runs for k in _scalars(r.get("test")) if k not in ("runtime_s",)})
    rows = []
    for r in runs:
        test = r.get("test") or {}
        rows.append([Path(r["run_dir"]).name, r["task"], r.get("model")] + [test.get(m, "") for m in metrics])
    notes = []
    if len(tasks) > 1:
        notes.append(f"Runs of different tasks ({', '.join(sorted(tasks))}): metrics are not comparable.")
    if len(data) > 1:
        notes.append(f"Runs on different data ({', '.join(sorted(data))}): compare with care.")
    sizes = {json.dumps((r.get("data_sizes") or {}).get("test")) for r in runs}
    if len(sizes) > 1:
        notes.append("Test splits differ in size between runs.")
    md = "# nlpkit run comparison\n\n" + md_table(rows, ["run", "task", "model"] + metrics) + "\n"
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return md, {"runs": [{"run_dir": r["run_dir"], "task": r["task"], "model": r.get("model"),
                          "test": _scalars(r.get("test"))} for r in runs], "notes": notes}
