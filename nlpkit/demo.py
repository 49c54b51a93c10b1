"""``nlpkit demo RUN``: try a trained run in the browser, in a Gradio app suited to its task.

The app of each task is the task's own :meth:`~nlpkit.task.Task.build_demo` (in the plugin's ``demo.py``); this
module loads the run through :func:`nlpkit.pipeline`, puts a header above the task's app (task, model, data, test
metric from the run's ``report.json``) and serves it. Gradio is an optional extra (``pip install
"nlpkit-hf[demo]"``): it is imported only here and in the plugins' ``demo.py``, inside the calls, so the core
never needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlpkit.config import model_name
from nlpkit.errors import ConfigError, ModelNotFoundError
from nlpkit.report import DISTRIBUTION

if TYPE_CHECKING:
    import argparse

    import gradio

    from nlpkit.pipeline import Pipeline

__all__ = ["INSTALL_HINT", "add_demo_command", "build_app", "launch_demo", "require_gradio", "run_summary"]

#: How to install the extra (by nlpkit's name on the package index, which is not its import name).
INSTALL_HINT = f'pip install "{DISTRIBUTION}[demo]"'


def require_gradio() -> Any:
    """The ``gradio`` module, or a :class:`ConfigError` saying how to install it."""
    # A demo of a local model sends nothing to Gradio's usage analytics unless the user asks for it.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise ConfigError(f"nlpkit demo needs Gradio, which is not installed: {INSTALL_HINT}") from err
    return gradio


def run_summary(run: str | Path) -> dict[str, Any]:
    """What the header shows about ``run``: its ``report.json`` (from the run folder or, for ``RUN/model``,
    its parent); an empty dict for a model folder or hub id without one."""
    folder = Path(run).expanduser()
    for candidate in (folder / "report.json", folder.parent / "report.json"):
        if folder.is_dir() and candidate.is_file():
            try:
                report = json.loads(candidate.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ModelNotFoundError(f"{candidate} is not valid JSON ({err}): the demo reads the run's test "
                                         f"metric from it. Restore the file, or remove it (the demo then shows no "
                                         f"metric).") from err
            if not isinstance(report, dict):
                raise ModelNotFoundError(f"{candidate} holds a {type(report).__name__}, not the JSON object of an "
                                         f"nlpkit report. Restore the file, or remove it "
                                         f"(the demo then shows no metric).")
            return report
    return {}


def _header(pipe: Pipeline, run: str | Path) -> tuple[str, str]:
    """(page title, markdown header): task, model, data and the test value of the run's main metric."""
    report = run_summary(run)
    task = pipe.task.name
    model = report.get("model") or model_name(pipe.task.cfg)
    metric = report.get("main_metric") or pipe.task.main_metric
    value = (report.get("test") or {}).get(metric)
    score = f"test {metric} {value:.4g}" if isinstance(value, (int, float)) else ""
    name = Path(report["run_dir"]).name if report.get("run_dir") else Path(str(model)).name
    title = " · ".join(x for x in (f"nlpkit demo: {task}", name, score) if x)
    where = report.get("run_dir") or str(run)
    # word2vec's run records its own output folder as the model: say so instead of repeating the path
    inside = report.get("run_dir") and str(model).startswith(str(report["run_dir"]))
    facts = [f"**{task}**", "model trained in this run" if inside else f"model `{model}`"]
    if report.get("data"):
        facts.append(f"data `{report['data']}`")
    if score:
        facts.append(f"**{score}**")
    return title, f"## nlpkit demo\n{' · '.join(facts)}  \n<small>{where}</small>"


def build_app(run: str | Path, pipe: Pipeline | None = None, task: str | None = None) -> gradio.Blocks:
    """The demo app of ``run`` (a run folder, model folder or model id; ``task`` names the task of a model that
    is not an nlpkit run): the header, then the task's :meth:`~nlpkit.task.Task.build_demo` around ``pipe``
    (loaded from ``run`` when not given). A :class:`UsageError` for a task without a demo."""
    gr = require_gradio()  # before loading a model: a missing extra should fail at once
    if pipe is None:
        from nlpkit.pipeline import pipeline

        pipe = pipeline(str(run)) if task is None else pipeline(task, model=str(run))
    body = pipe.task.build_demo(pipe)
    title, header = _header(pipe, run)
    with gr.Blocks(title=title) as app:
        gr.Markdown(header, elem_id="nlpkit-demo-header")
        body.render()
    return app


def launch_demo(run: str | Path, port: int | None = None, host: str = "127.0.0.1", share: bool = False,
                task: str | None = None, block: bool = True) -> gradio.Blocks:
    """Serve the demo of ``run`` on ``host:port`` (port None: Gradio's default, 7860 or the next free one).

    ``share=True`` also opens a public ``*.gradio.live`` link through Gradio's servers. ``block=False`` returns
    once the server runs (``app.close()`` stops it); the URL is ``app.local_url``.
    """
    app = build_app(run, task=task)
    # show_error: a user error (an unknown word, a bad option) appears in the page instead of a bare "Error".
    app.queue().launch(server_name=host, server_port=port, share=share, show_error=True,
                       prevent_thread_lock=not block)
    return app


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """``nlpkit demo RUN [--port P] [--host H] [--share yes|no] [--task T]`` (called by the CLI's parser)."""
    p = subparsers.add_parser(
        "demo", help=f"Try a run in the browser: a Gradio app suited to its task ({INSTALL_HINT}).",
        description="Serves a web app for the run's model, the one its task builds (Task.build_demo; e.g. "
                    "sentiment -> every label with its score, generation -> the continuation, streamed as it is "
                    "generated). Stop it with Ctrl+C. Needs the demo extra: "
                    f"{INSTALL_HINT}.")
    p.add_argument("run", help="Run folder, model folder or model id.")
    p.add_argument("--port", type=int, help="Port to serve on (default: 7860, or the next free one).")
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every network).")
    p.add_argument("--share", choices=("yes", "no"), default="no",
                   help="yes: also a public *.gradio.live link through Gradio's servers (default no).")
    p.add_argument("--task", help="Task name, when the model is not an nlpkit run.")
    p.set_defaults(fn=lambda args: launch_demo(args.run, port=args.port, host=args.host,
                                               share=args.share == "yes", task=args.task))
