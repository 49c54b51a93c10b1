"""Command line: ``nlpkit ...`` and the ``main(task)`` that every ``tasks/*.py`` launch script calls."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from nlpkit.config import config_help, load_config
from nlpkit.demo import add_demo_command
from nlpkit.errors import ConfigError, NlpkitError, UsageError
from nlpkit.serve import add_serve_command
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
    import textwrap

    from nlpkit.registry import available_tasks, get_task

    names = available_tasks()
    width = max(map(len, names), default=0) + 2
    for name in names:
        try:  # the docstring's first paragraph, whole: its first line alone may end mid-sentence
            summary = " ".join((get_task(name).__doc__ or "").strip().split("\n\n")[0].split())
            summary = re.sub(r"(?<=\w)/ (?=\w)", "/", summary)  # "micro/macro/" + newline + "samples"
        except NlpkitError as err:  # one broken plugin must not hide the others
            summary = f"(cannot be loaded: {err})"
        print(textwrap.fill(summary, 110, initial_indent=f"{name:{width}s}", subsequent_indent=" " * width,
                            break_on_hyphens=False))


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
    from nlpkit.pipeline import pipeline

    if bool(args.input) != bool(args.output):
        raise UsageError("--input and --output go together (a file in, a file out).")
    if args.input and args.texts:
        raise UsageError("Give texts as arguments or --input FILE, not both.")
    options = {"top_k": args.top_k} if args.top_k is not None else {}
    if args.engine == "ray":
        _predict_on_ray(args, options)
        return
    device, main_process = None, True
    if args.input:
        from nlpkit.predict_file import check_output

        check_output(args.output, args.overwrite)  # before the model loads, not after every row is predicted
        from accelerate import PartialState

        state = PartialState()
        device, main_process = str(state.device), state.is_main_process  # under accelerate launch: this rank's GPU
    pipe = pipeline(args.model, device=device) if args.task is None else pipeline(args.task, model=args.model,
                                                                                  device=device)
    if args.input:
        from nlpkit.predict_file import predict_file

        summary = predict_file(pipe, args.input, args.output, text_column=args.text_column,
                               batch_size=args.batch_size, chunk_rows=args.chunk_rows, overwrite=args.overwrite,
                               **options)
        if main_process:
            print(f"Predicted {summary['rows']} rows -> {summary['output']} "
                  f"(new columns: {', '.join(summary['columns'])})")
        return
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    for text, out in zip(texts, pipe(texts, batch_size=args.batch_size, **options)):
        print(json.dumps({"input": text, "output": out}, ensure_ascii=False))


def _predict_on_ray(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """``nlpkit predict --engine ray``: the files on a Ray cluster (:mod:`nlpkit.ray_predict`)."""
    from nlpkit.ray_predict import predict_ray

    if not (args.input and args.output) or args.texts:
        raise UsageError("--engine ray predicts files: give --input GLOB and --output FOLDER (no texts).")
    summary = predict_ray(args.model, args.input, args.output, task=args.task, address=args.address,
                          actors=args.actors, text_column=args.text_column, batch_size=args.batch_size,
                          chunk_rows=args.chunk_rows, threads=args.threads or 1, overwrite=args.overwrite, **options)
    print(f"Predicted {summary['rows']} rows -> {summary['output']}/ ({summary['files']} parquet shards; "
          f"new columns: {', '.join(summary['columns'])})")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from nlpkit.evaluation import evaluate_run, write_evaluation_report

    bad = [a for a in args.overrides if "=" not in a]
    if bad:
        raise UsageError(f"Unexpected argument {bad[0]!r}: overrides are key=value (e.g. data.text_column=review).")
    overrides = dict(a.split("=", 1) for a in args.overrides)
    task, results = evaluate_run(args.run, task=args.task, data=args.data, split=args.split, **overrides)
    metrics = results.test or {}
    out = write_evaluation_report(args.run, task, results, args.out, data=args.data, split=args.split)
    main = task.main_metric
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k not in ("samples", "runtime_s", "samples_per_s", main)]
    where = args.data or "the run's own data"
    print(f"Scored {metrics.get('samples', 0)} rows of {where} ({args.split}).")
    for k, v in shown + [(main, metrics.get(main))]:
        print(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    print(f"Report: {out}/report.md")


def _cmd_export(args: argparse.Namespace) -> None:
    from nlpkit.export import export_model

    entry = export_model(args.run, args.out, format=args.format, quantize=args.quantize, force=args.force,
                         keep_fp32=args.keep_fp32, optimize=not args.no_optimize, opset=args.opset,
                         fallback_margin=args.fallback_margin)
    check = entry["check"]
    graphs = entry.get("graphs", ["model.onnx"])
    size = sum((Path(args.out) / g).stat().st_size for g in graphs) / 2**20
    fused = "fused, " if entry.get("fused") else ""
    kept = (entry.get("fallback") or {}).get("file")  # the fp32 graph an int8 export keeps: on disk too
    kept = f"; fp32 fallback {kept}, {(Path(args.out) / kept).stat().st_size / 2**20:.1f} MB" if kept else ""
    agreement = ", ".join(f"{k.replace('_', ' ')} {100 * v:.4g}%" for k, v in check.items() if k != "max_abs_diff")
    print(f"Exported {args.run} -> {args.out} ({entry['kind']}: {fused}{' + '.join(graphs)}, {entry['precision']}, "
          f"{size:.1f} MB{kept}). Check against PyTorch: max |output diff| {check['max_abs_diff']:.2e}, {agreement}.\n"
          f"Use it: nlpkit predict {args.out} \"some text\"   or   nlpkit.pipeline({str(args.out)!r})")


def _cmd_presets(args: argparse.Namespace) -> None:
    import textwrap

    from nlpkit.registry import available_tasks, get_task, preset_header

    indent = " " * 30
    for name in [args.task] if args.task else available_tasks():
        for preset, path in get_task(name).presets().items():
            about, launch = preset_header(path)
            print(textwrap.fill(about.rstrip(":"), 110, initial_indent=f"{name:12s} {preset:16s} ",
                                subsequent_indent=indent, break_on_hyphens=False))
            for line in launch:
                print(f"{indent}$ {line}")


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

    p = sub.add_parser("predict", help="Predict with a run or model: texts as arguments or on stdin, or a whole "
                                       "file (--input/--output).",
                       description="Texts as arguments (or one per line on stdin) print one JSON line each. "
                                   "--input FILE --output FILE (csv/tsv/jsonl/parquet) predicts every row in "
                                   "chunks, keeping the input's columns and order and adding the prediction "
                                   "columns; under accelerate launch the rows are split across processes.")
    p.add_argument("model", help="Run folder, model folder or model id.")
    p.add_argument("texts", nargs="*", help="Inputs (default: one per line on stdin).")
    p.add_argument("--task", help="Task name, when the model is not an nlpkit run.")
    p.add_argument("--input", help="A csv/tsv/jsonl/parquet file to predict.")
    p.add_argument("--output", help="Where to write the predictions (csv/tsv/jsonl/parquet, by its extension); "
                                    "its folder must exist, and an existing file is kept unless --overwrite.")
    p.add_argument("--overwrite", action="store_true", help="Replace the --output file if it exists.")
    p.add_argument("--text-column", help="Input column to predict from (default: the task's text column).")
    p.add_argument("--top-k", type=int, help="Classification: the k best labels with scores (0: all).")
    p.add_argument("--batch-size", type=int, default=64, help="Inputs per batch (default 64).")
    p.add_argument("--chunk-rows", type=int, default=2048, help="Rows read and written at a time (default 2048).")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process (or accelerate launch's). ray: Ray Data on a Ray cluster; "
                        "--input is then a glob, folder or fsspec URL of files, --output a folder of parquet shards "
                        "(needs the ray extra).")
    p.add_argument("--address", help="--engine ray: the cluster's head (HOST:PORT; default: RAY_ADDRESS, else a "
                                     "Ray instance started on this machine).")
    p.add_argument("--actors", type=int, help="--engine ray: model copies (default: the cluster's CPUs / --threads).")
    p.add_argument("--threads", type=int, help="--engine ray: threads of each model copy (default 1).")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("evaluate", help="Score a run on its own test split or on another dataset; write a report.",
                       description="Scores the saved model with the task's metrics. With --data, SPLIT of that "
                                   "source is scored whole (a single file: every row). Writes report.json, "
                                   "report.md and plots into --out (default RUN/eval-<data>-<split>).")
    p.add_argument("run", help="Run folder or model folder.")
    p.add_argument("--data", help="Catalog name, file, folder or hub id to score (default: the run's own data).")
    p.add_argument("--split", default="test", help="Split to score (default test; a single file is scored whole).")
    p.add_argument("--out", help="Report folder (default: RUN/eval-<data>-<split>).")
    p.add_argument("--task", help="Task name, when the model is not an nlpkit run.")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. data.text_column=review).")
    p.set_defaults(fn=_cmd_evaluate)

    p = sub.add_parser("presets", help="List the presets of every task (or of one).")
    p.add_argument("task", nargs="?", help="Only this task's presets.")
    p.set_defaults(fn=_cmd_presets)

    from nlpkit.export import OPSET

    p = sub.add_parser("export", help="Export a trained model to ONNX (optionally int8) for fast CPU inference.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Writes OUT with the ONNX graph(s), the tokenizer, config.json and the nlpkit\n"
                                   "descriptor; `nlpkit.pipeline(OUT)` and `nlpkit predict OUT` run it with ONNX\n"
                                   "Runtime through the task's own length-sorted batching and post-processing.\n"
                                   "What is exported is the task's (Task.export_spec): a classifier exports\n"
                                   "model.onnx (fused encoder); a generator exports decoder.onnx (one decoding step\n"
                                   "with a KV cache; plus encoder.onnx for an encoder-decoder), run by transformers'\n"
                                   "generate(); a plugin's own kind as that plugin defines it.\n"
                                   "Needs: pip install 'nlpkit-hf[onnx]'.",
                       epilog="examples:\n"
                              "  nlpkit export outputs/sentiment-<timestamp> --out exports/sentiment-fp32\n"
                              "  nlpkit export outputs/sentiment-<timestamp> --quantize int8 "
                              "--out exports/sentiment-int8\n"
                              "  nlpkit export outputs/translation-<timestamp> --out exports/translation-fp32")
    p.add_argument("run", help="A run folder (or its model/ folder) of a task that exports (`nlpkit tasks`); a "
                               "LoRA run's adapter is merged into its base first.")
    p.add_argument("--out", required=True, help="The folder to write (new, empty, or an earlier export with "
                                                "--overwrite).")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="Export format (default onnx).")
    p.add_argument("--quantize", choices=["int8"], help="int8: dynamic int8 weights per channel, activations "
                                                        "quantized per batch (faster on CPU; a classifier also "
                                                        "keeps an fp32 graph for close calls, see "
                                                        "--fallback-margin); default: fp32.")
    p.add_argument("--keep-fp32", default=None, metavar="REGEX",
                   help="int8: ONNX nodes whose names match stay fp32 (default: the task's: for a classifier the "
                        "attention and feed-forward output projections of BERT-style encoders, the most "
                        "quantization-sensitive, none when it keeps an fp32 fallback; for sentence embeddings the "
                        "feed-forward output projections; none for generators; '' quantizes every MatMul).")
    p.add_argument("--fallback-margin", type=float, default=None, metavar="GAP",
                   help="int8 single-label classifiers: keep the fp32 graph too and score again in fp32 every "
                        "row whose two best label probabilities are within GAP (default: the task's, 0.2 for "
                        "sentiment; 0: no fallback). Nearly every label is then the fp32 model's, at close to int8 "
                        "speed; the folder also holds the fp32 graph.")
    p.add_argument("--no-optimize", action="store_true", help="Skip ONNX Runtime's transformer fusion "
                                                              "(attention, LayerNorm, GELU kernels) of a "
                                                              "classifier's encoder.")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}).")
    p.add_argument("--overwrite", "--force", dest="force", action="store_true",
                   help="Replace OUT if it holds an earlier export (a folder holding anything else is never "
                        "replaced).")
    p.set_defaults(fn=_cmd_export)

    add_demo_command(sub)
    add_serve_command(sub)
    add_tune_command(sub)
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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow the options (`nlpkit evaluate RUN --data f.csv data.text_column=review`)
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in a for a in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _exit_on_error(args.fn, args)


if __name__ == "__main__":
    console_main()
