"""Command line: ``nlpkit ...`` and the ``main(task)`` that every ``tasks/*.py`` launch script calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from nlpkit.config import config_help, load_config
from nlpkit.demo import add_demo_command
from nlpkit.errors import ConfigError, NlpkitError, UsageError
from nlpkit.tune import add_tune_command

TASK_USAGE = """usage: accelerate launch [--config_file accelerate_configs/<setup>.yaml] tasks/{task}.py \\
           [PRESET] [key=value ...]

Train and evaluate the {task} task. Defaults <- PRESET <- key=value overrides (dotted keys, e.g.
train.lr=3e-5 data.max_train_samples=500). PRESET is a preset name ({presets}) or any .yaml file.
Processes, GPUs and precision come from the accelerate config.
The run folder (output_dir) gets the model, report.json, report.md, plots and a model card.

options:
  -h, --help        show this help and every config option
  --print-config    print the resolved config as YAML and exit

config options (key=default (type), meaning):
"""


def _exit_on_error(fn: Any, *args: Any) -> Any:
    """Run ``fn``; user errors become one clear line on stderr and exit code 2 (NLPKIT_DEBUG=1: traceback)."""
    try:
        return fn(*args)
    except Exception as exc:
        if os.environ.get("NLPKIT_DEBUG") or not isinstance(exc, NlpkitError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def parse_task_args(task: str, argv: list[str]) -> tuple[Any, bool]:
    """``[preset.yaml] [key=value ...]`` -> (config, print_only). Prints help and exits on -h."""
    from nlpkit.registry import find_preset, get_task

    cls = get_task(task)
    schema = cls.Config
    if any(a in ("-h", "--help") for a in argv):
        names = ", ".join(cls.presets()) or "none built in"
        print(TASK_USAGE.format(task=task, presets=names) + config_help(schema))
        sys.exit(0)
    print_only = "--print-config" in argv
    argv = [a for a in argv if a != "--print-config"]
    preset = None
    if argv and "=" not in argv[0]:
        preset, argv = find_preset(task, argv[0]), argv[1:]
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"Unexpected argument {bad[0]!r}: overrides are key=value (see --help).")
    cfg = load_config(schema, preset, argv + [f"task={task}"])
    return cfg, print_only


def main(task: str, argv: list[str] | None = None) -> dict[str, Any] | None:
    """Entry point of ``tasks/<task>.py``: parse the arguments, run, print where the results are."""
    from nlpkit.config import save_config
    from nlpkit.runner import run

    cfg, print_only = _exit_on_error(parse_task_args, task, list(sys.argv[1:] if argv is None else argv))
    if print_only:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            save_config(cfg, Path(tmp) / "c.yaml")
            print((Path(tmp) / "c.yaml").read_text())
        return None
    report = _exit_on_error(run, cfg)
    if report:
        test = {k: v for k, v in (report.get("test") or {}).items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in test.items()
                          if k not in ("runtime_s", "samples_per_s"))
        print(f"\nDone. Test: {shown}\nReport: {report['run_dir']}/report.md")
    return report


# --------------------------------------------------------------------------------------------- nlpkit


def _cmd_train(args: argparse.Namespace) -> None:
    main(args.task, args.overrides)


def _cmd_tasks(args: argparse.Namespace) -> None:
    from nlpkit.registry import available_tasks, get_task

    for name in available_tasks():
        cls = get_task(name)
        print(f"{name:12s} {(cls.__doc__ or '').strip().splitlines()[0]}")


def _cmd_assets(args: argparse.Namespace) -> None:
    from nlpkit import assets

    if args.action == "list":
        rows = assets.list_assets()
        print(f"{'name':16s} {'kind':8s} {'download':>8s}  {'cached':6s}  {'source':32s} license")
        for a in rows:
            cached = "yes" if assets.is_cached(a.name) else "no"
            print(f"{a.name:16s} {a.kind:8s} {a.size_mb:6.1f}MB  {cached:6s}  {a.package + '==' + a.version:32s} "
                  f"{a.license}")
        print(f"\ncache: {assets.cache_dir()}  (set NLPKIT_CACHE to move it)")
        return
    if not args.names:
        raise UsageError("nlpkit assets fetch needs at least one NAME (see `nlpkit assets list`), or --all.")
    names = [a.name for a in assets.list_assets()] if args.names == ["all"] else args.names
    for name in names:
        print(f"{name}: {assets.fetch(name)}")


def _cmd_report(args: argparse.Namespace) -> None:
    from nlpkit.report import compare_runs

    md, data = compare_runs(args.runs)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(md)
        (out / "comparison.json").write_text(json.dumps(data, indent=2))
        print(f"Wrote {out}/comparison.md and comparison.json")


def _cmd_predict(args: argparse.Namespace) -> None:
    import nlpkit

    pipe = nlpkit.pipeline(args.model) if args.task is None else nlpkit.pipeline(args.task, model=args.model)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    for text, out in zip(texts, pipe(texts, batch_size=args.batch_size)):
        print(json.dumps({"input": text, "output": out}, ensure_ascii=False))


def _cmd_presets(args: argparse.Namespace) -> None:
    from nlpkit.registry import available_tasks, get_task

    for name in [args.task] if args.task else available_tasks():
        for preset, path in get_task(name).presets().items():
            first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
            print(f"{name:12s} {preset:16s} {first}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlpkit", description="Train, evaluate, report and serve NLP models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="Train a task (same as `accelerate launch tasks/<task>.py`).",
                       description="Train a task on one process. For several GPUs use accelerate launch.")
    p.add_argument("task", help="Task name (see `nlpkit tasks`).")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="[preset.yaml] [key=value ...]; --help for options")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("tasks", help="List the registered tasks.")
    p.set_defaults(fn=_cmd_tasks)

    p = sub.add_parser("assets", help="The offline asset catalog: list, or pre-fetch into the cache.")
    p.add_argument("action", choices=["list", "fetch"], help="list: show the catalog; fetch: download and convert")
    p.add_argument("names", nargs="*", help="Catalog names to fetch (`all` for every one).")
    p.set_defaults(fn=_cmd_assets)

    p = sub.add_parser("report", help="Compare the test metrics of several runs side by side.")
    p.add_argument("runs", nargs="+", help="Run folders (each with report.json).")
    p.add_argument("--out", help="Also write comparison.md and comparison.json into this folder.")
    p.set_defaults(fn=_cmd_report)

    p = sub.add_parser("predict", help="Predict with a run or model for texts given as arguments or on stdin.")
    p.add_argument("model", help="Run folder, model folder or model id.")
    p.add_argument("texts", nargs="*", help="Inputs (default: one per line on stdin).")
    p.add_argument("--task", help="Task name, when the model is not an nlpkit run.")
    p.add_argument("--batch-size", type=int, default=64, help="Inputs per batch (default 64).")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("presets", help="List the presets of every task (or of one).")
    p.add_argument("task", nargs="?", help="Only this task's presets.")
    p.set_defaults(fn=_cmd_presets)

    add_tune_command(sub)
    add_demo_command(sub)
    _task_commands(sub)
    return parser


def _task_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that tasks contribute (``Task.add_commands``: ``nlpkit generate``, ``nlpkit baseline``)."""
    import logging

    from nlpkit.registry import available_tasks, get_task

    for name in available_tasks():
        try:
            get_task(name).add_commands(sub)
        except NlpkitError as err:  # one broken plugin must not take the whole command line down
            logging.getLogger("nlpkit").warning("task %s: %s", name, err)


def console_main(argv: list[str] | None = None) -> None:
    """The ``nlpkit`` console command."""
    args = build_parser().parse_args(argv)
    _exit_on_error(args.fn, args)
