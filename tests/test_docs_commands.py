"""The docs tell the truth: every shell command in the README and the docs runs as written.

Each command of a ```bash block in ``README.md`` and ``docs/**/*.md`` is checked without running it (nothing
trains here): ``nlpkit ...`` goes through the real argparse parser (subcommand, flags, ``key=value`` overrides);
``accelerate launch`` through accelerate's own launch parser, then the launch script's arguments through
nlpkit's config builder (preset names, config keys, value types); benchmark scripts' flags must be flags the
script defines; ``pip install`` extras must be extras of ``pyproject.toml``; every repository path a command
names must exist. Programs that cannot be checked this way are listed in ``UNCHECKED`` with the reason.

The figures and lists the docs copy from the code are compared with it too: the presets table, the per-task
training defaults, preset files quoted in full, the example plugin's ``pyproject.toml``, the FSDP recipes'
layer class names, and what ``nlpkit presets`` / ``nlpkit generate`` / ``nlpkit.pipeline`` do by default.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_griffe" not in p.parts)]
#: Top-level folders of the repository: a command argument under one of them names a file that must exist.
REPO_DIRS = ("examples/", "tasks/", "benchmarks/", "accelerate_configs/", "tests/", "docs/", "nlpkit/")
#: Programs whose commands are not checked here, and why.
UNCHECKED = {
    "ruff": "a linter run by CI (.ci/run) on the repository as is",
    "lint-imports": "import-linter, run by CI (.ci/run) with the contracts of pyproject.toml",
    "mkdocs": "the docs build, run by CI (.ci/run) with --strict",
    "tensorboard": "TensorBoard's own viewer; the run folder's logs/ are checked by the tracker tests",
    "mlflow": "MLflow's own UI; the tracking store is checked by the tracker tests",
    "curl": "needs a running `nlpkit serve`; the same requests are made by tests/test_serve.py",
    "apt-get": "a system package install (Debian's chromium for the demo's browser test)",
    "export": "a shell builtin setting an environment variable",
    "wait": "a shell builtin (waits for background jobs)",
    "srun": "SLURM's launcher; what it runs is the accelerate launch line checked elsewhere",
    "iconv": "a system tool in an example of re-encoding a user's file",
    "huggingface-cli": "the Hugging Face hub's own client",
}
#: An argument holding a placeholder the reader fills in (`outputs/sentiment-<timestamp>`, `<folder>`, `...`).
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\$\w+|\$\{")


@dataclass(frozen=True)
class Command:
    where: str  # file:line, for messages and test ids
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


def _blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of every bash/sh/shell code block of a markdown file (indented ones too)."""
    fence = re.compile(r"^(\s*)```+\s*(\w*)")
    lines, out, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not fence.match(lines[j]):
            j += 1
        if m.group(2) in ("bash", "sh", "shell"):
            out.append((i + 2, "\n".join(lines[i + 1:j])))
        i = j + 1
    return out


def shell_commands(paths: list[Path] = DOCS) -> list[Command]:
    """Every simple command of the docs' shell blocks: continuations joined, comments dropped, `&&`, `;`, `|`
    and `&` split, `$(...)` replaced by a placeholder word."""
    commands = []
    for path in paths:
        for first, text in _blocks(path):
            text = text.replace("\\\n", " ")
            for offset, line in enumerate(text.splitlines()):
                line = re.sub(r"\$\([^)]*\)", "SUBST", line)
                lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
                lexer.whitespace_split, lexer.commenters = True, "#"
                try:
                    words = list(lexer)
                except ValueError as err:  # an unbalanced quote: the line itself is broken
                    words = [f"<unparsable: {err}>"]
                current: list[str] = []
                for word in [*words, ";"]:
                    if word and set(word) <= set(";&|"):
                        if current:
                            rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                            commands.append(Command(f"{rel}:{first + offset}", tuple(current)))
                        current = []
                    else:
                        current.append(word)
    return commands


# ------------------------------------------------------------------------------------------ the checks


def _without_env(argv: tuple[str, ...]) -> list[str]:
    words = list(argv)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words.pop(0)
    return words


def _paths_exist(words: list[str]) -> list[str]:
    """Repository paths named by a command (`examples/...`, `tasks/...`, ...) that do not exist."""
    problems = []
    for word in words:
        value = word.split("=", 1)[1] if re.fullmatch(r"[\w.-]+=.*", word) else word
        for part in value.split(","):
            if part.startswith(REPO_DIRS) and not PLACEHOLDER.search(part) and "*" not in part:
                if not (ROOT / part).exists():
                    problems.append(f"{part} does not exist in the repository")
    return problems


@contextlib.contextmanager
def _quiet() -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _user_file(word: str, tmp: Path) -> str:
    """A preset file the reader brings (`my_settings.yaml`, a tuning study's `best.yaml`): an empty one."""
    if word.endswith((".yaml", ".yml")) and not (ROOT / word).exists() and not word.startswith(REPO_DIRS):
        path = tmp / Path(word).name
        path.write_text("{}\n")
        return str(path)
    return word


def _task_args(task: str, args: list[str], tmp: Path) -> list[str]:
    """Check `[PRESET] [key=value ...] [--print-config|--help]` of a task's launch script with nlpkit's parser."""
    from nlpkit.cli import parse_task_args
    from nlpkit.errors import NlpkitError

    args = [_user_file(a, tmp) for a in args]
    try:
        with _quiet():
            parse_task_args(task, args)
    except SystemExit as exc:  # --help prints and exits 0
        return [] if exc.code in (0, None) else [f"tasks/{task}.py {shlex.join(args)}: exits {exc.code}"]
    except NlpkitError as err:
        return [f"{task} {shlex.join(args)}: {err}"]
    return []


def _overrides(task: str, overrides: list[str]) -> list[str]:
    """`key=value` overrides checked against ``task``'s config schema (keys and types)."""
    from nlpkit.config import load_config
    from nlpkit.errors import NlpkitError
    from nlpkit.registry import get_task

    try:
        load_config(get_task(task).Config, None, [*overrides, f"task={task}"])
    except NlpkitError as err:
        return [f"{task} overrides {overrides}: {err}"]
    return []


def _task_named_by(path: str) -> str | None:
    """The task a run path names (`outputs/sentiment-<timestamp>`), if any."""
    from nlpkit.registry import available_tasks

    name = Path(path).name
    return next((t for t in available_tasks() if name.startswith(f"{t}-")), None)


def check_accelerate(words: list[str], tmp: Path) -> list[str]:
    from accelerate.commands.launch import launch_command_parser

    if words[1:2] != ["launch"]:
        return [f"accelerate {words[1:2]}: only `accelerate launch` is documented"]
    parser = launch_command_parser()
    try:
        with _quiet():
            args = parser.parse_args(words[2:])
    except SystemExit:
        return [f"accelerate launch does not accept these options: {shlex.join(words[2:])}"]
    problems = []
    if args.config_file and not (ROOT / args.config_file).is_file():
        problems.append(f"--config_file {args.config_file} does not exist")
    script, script_args = args.training_script, list(args.training_script_args)
    if args.module:  # `-m package`: a plugin's launch module
        return problems + _module_args(script, script_args, tmp)
    if not script.startswith("tasks/") or not (ROOT / script).is_file():
        return [*problems, f"launch script {script} is not one of tasks/*.py"]
    return problems + _task_args(Path(script).stem, script_args, tmp)


def _module_args(module: str, args: list[str], tmp: Path) -> list[str]:
    """`accelerate launch -m MODULE ...`: `nlpkit.tune` (the same arguments as `nlpkit tune`), or the example
    plugin's launch module (`nlpkit_text_regression`, its task's arguments)."""
    if module == "nlpkit.tune":
        return check_nlpkit(["nlpkit", "tune", *args], tmp)
    if module == "nlpkit_text_regression":
        return _task_args("text_regression", args, tmp)
    return [f"-m {module}: not a launch module of this repository"]


def check_torchrun(words: list[str], tmp: Path) -> list[str]:
    script = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
    if script is None or not words[script].startswith("tasks/"):
        return ["torchrun without a tasks/*.py script"]
    return _task_args(Path(words[script]).stem, words[script + 1:], tmp)


def check_nlpkit(words: list[str], tmp: Path) -> list[str]:
    from nlpkit.cli import build_parser

    parser = build_parser()
    try:
        with _quiet():
            args, extra = parser.parse_known_args(words[1:])
    except SystemExit:
        return [f"the nlpkit parser refuses: {shlex.join(words[1:])}"]
    if extra and not (isinstance(getattr(args, "overrides", None), list) and all("=" in a for a in extra)):
        return [f"unrecognized arguments: {shlex.join(extra)}"]  # what console_main reports
    overrides = [*(getattr(args, "overrides", None) or []), *extra]
    command = args.command
    if command == "train":
        return _task_args(args.task, overrides, tmp)
    if command == "tune":  # [PRESET] [key=value ...] as for training, plus the search space
        return _task_args(args.task, overrides, tmp)
    if command == "presets" and args.task:
        return _overrides(args.task, [])
    if command == "assets" and args.action == "fetch":
        from nlpkit.assets import list_assets

        known = {a.name for a in list_assets()} | {"all"}
        return [f"{n} is not a catalog name" for n in args.names if n not in known]
    if command == "baseline":
        return _overrides("sentiment", overrides)
    if command == "evaluate" and overrides:
        task = args.task or _task_named_by(args.run)
        if task:
            return _overrides(task, overrides)
        from nlpkit.registry import available_tasks  # a run folder named by the user: some task must take them

        checked = [_overrides(t, overrides) for t in available_tasks()]
        return [] if [] in checked else [f"no task takes the overrides {overrides}"]
    return []


def check_pip(words: list[str], tmp: Path) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    problems = []
    for word in words[2:]:
        m = re.fullmatch(r"(\.|[A-Za-z0-9_.-]+)\[([\w,-]+)\]", word)
        if m:
            if m.group(1) not in (".", project["name"]):
                problems.append(f"{m.group(1)} is not this distribution ({project['name']})")
            problems += [f"no extra {e!r} in pyproject.toml" for e in m.group(2).split(",") if e not in extras]
        elif re.match(r"nlpkit(?![\w-])", word):
            problems.append(f"{word}: not this distribution, which is {project['name']}")
    return problems


def check_python(words: list[str], tmp: Path) -> list[str]:
    if words[1:3] == ["-m", "pytest"]:
        return check_pytest(words[2:], tmp)
    script = words[1]
    if not script.startswith("benchmarks/"):
        return [f"python {script}: not a script of this repository"]
    source = (ROOT / script).read_text() if (ROOT / script).is_file() else ""
    problems = [] if source else [f"{script} does not exist"]
    for word in words[2:]:
        if word.startswith("--") and f'"{word.split("=")[0]}"' not in source:
            problems.append(f"{script} has no option {word}")
    overrides = [w for w in words[2:] if re.fullmatch(r"[a-z_]\w*\.[\w.]+=.*", w)]
    task = next((t for t in ("sentiment", "translation", "generation", "word2vec") if Path(script).stem.startswith(t)),
                None)
    if overrides and task:
        problems += _overrides(task, overrides)
    return problems


def check_pytest(words: list[str], tmp: Path) -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = {m.split(":")[0] for m in config["markers"]}
    known = markers | {"and", "not", "or"}
    problems = []
    for i, word in enumerate(words[1:], 1):
        if words[i - 1] == "-m":
            problems += [f"no pytest marker {m!r}" for m in re.findall(r"\w+", word) if m not in known]
    return problems


CHECKS = {"accelerate": check_accelerate, "torchrun": check_torchrun, "nlpkit": check_nlpkit, "pip": check_pip,
          "python": check_python, "python3": check_python, "pytest": check_pytest}


def check_command(cmd: Command, tmp: Path) -> list[str]:
    """Everything wrong with one documented command (empty: it would run as written)."""
    words = _without_env(cmd.argv)
    if not words:
        return []
    program = words[0]
    problems = _paths_exist(words[1:]) + _outputs_paths(words[1:])
    problems += [f"{w!r}: a placeholder with a space is split by the shell (write `<task>-<timestamp>` style)"
                 for w in words if w.count("<") != w.count(">")]
    if program in CHECKS:
        return problems + CHECKS[program](words, tmp)
    if program in UNCHECKED:
        return problems
    return [*problems, f"{program}: no check for this program (add one, or list it in UNCHECKED with the reason)"]


def _outputs_paths(words: list[str]) -> list[str]:
    """A run folder under outputs/ that no default run makes (runs are outputs/<task>-<timestamp>, sweeps
    outputs/tune-<task>-<space>): `outputs/sentiment-minilm-l6` reads like a path the reader will have, and is not."""
    from nlpkit.registry import available_tasks

    tasks = "|".join(available_tasks())
    spaces = {p.stem for p in (ROOT / "examples" / "spaces").glob("*.yaml")}
    problems = []
    for before, word in zip(["", *words], words):
        if before in ("--out", "--output") or word.startswith("output_dir="):
            continue  # a folder the reader chooses, not one a run made
        m = re.search(r"(?:^|=)outputs/([^/\s]+)", word)
        if not m or PLACEHOLDER.search(m.group(1)):
            continue
        tune = re.fullmatch(rf"tune-(?:{tasks})-(\w+)", m.group(1))
        if not (tune and tune.group(1) in spaces):
            problems.append(f"outputs/{m.group(1)} is not a folder a default run makes (outputs/<task>-<timestamp>)")
    return problems


def inline_usages(paths: list[Path] = DOCS) -> list[tuple[str, str]]:
    """(where, text) of every inline code span of the docs that shows an `nlpkit` command."""
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for span in re.findall(r"`(nlpkit [^`]+)`", line):
                found.append((f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{number}", span))
    return found


def check_usage(text: str) -> list[str]:
    """An inline `nlpkit ...` usage line, read by the real parser. Placeholders (RUN, FILE, "text") stand for
    values; `[...]` parts are optional, so the line must parse with and without them; a span that only names
    options of a subcommand (`nlpkit predict --input`) must name options it has."""
    from nlpkit.cli import build_parser

    words = text.replace("/--", " --").split()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if len(words) < 2 or words[1] == "...":
        return []
    if words[1] not in subparsers.choices:
        return [f"nlpkit has no subcommand {words[1]!r}"]
    sub = subparsers.choices[words[1]]
    rest = words[2:]
    if not rest or all(w.startswith("-") for w in rest):  # a mention of the subcommand or of its options
        options = {o for a in sub._actions for o in a.option_strings}
        return [f"nlpkit {words[1]} has no option {w}" for w in rest if w not in options]
    line = " ".join(rest)
    problems = []
    for form in (re.sub(r"\[[^\[\]]*\]", " ", line), line.replace("[", " ").replace("]", " ")):
        argv = [_placeholder_value(w) for w in shlex.split(form) if w not in ("...", "|")]
        try:
            with _quiet():
                args, extra = parser.parse_known_args([words[1], *argv])
        except SystemExit:
            problems.append(f"the nlpkit parser refuses `nlpkit {words[1]} {form.strip()}`")
            continue
        if extra and not (isinstance(getattr(args, "overrides", None), list) and all("=" in a for a in extra)):
            problems.append(f"unrecognized arguments in `nlpkit {words[1]} {form.strip()}`: {extra}")
    return problems


def _placeholder_value(word: str) -> str:
    """A usage placeholder (RUN, FILE, SPACE.yaml, RUN..., "text") as a value any option type takes."""
    word = word.removesuffix("...")
    return "1" if re.fullmatch(r"[A-Z][A-Z_]*(\.\w+)?|text|prompt|<\w+>", word) else word


@pytest.fixture
def example_plugin() -> Any:
    """The example plugin of docs/adding-a-task.md registered for this test only (it is not installed here)."""
    from nlpkit import registry

    folder = str(ROOT / "examples" / "nlpkit-text-regression")
    sys.path.insert(0, folder)
    try:
        from nlpkit_text_regression import TextRegressionTask

        registry.register_task("text_regression")(TextRegressionTask)
        yield
    finally:
        registry._TASKS.pop("text_regression", None)
        sys.path.remove(folder)
        for name in [m for m in sys.modules if m.startswith("nlpkit_text_regression")]:
            del sys.modules[name]


@pytest.fixture
def no_gpu_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`model.quantization=4bit` is refused on a machine without CUDA/bitsandbytes when the config is built;
    the docs' QLoRA lines are checked for their keys and values as on a GPU machine."""
    import nlpkit.config

    monkeypatch.setattr(nlpkit.config, "check_quantization", lambda model: None)


def test_the_docs_have_commands_of_every_kind() -> None:
    programs = {_without_env(c.argv)[0] for c in shell_commands() if _without_env(c.argv)}
    assert {"accelerate", "nlpkit", "pip", "python"} <= programs
    assert len(shell_commands()) > 100


@pytest.mark.usefixtures("example_plugin", "no_gpu_needed")
def test_every_documented_command_runs_as_written(tmp_path: Path) -> None:
    """All at once, so one report lists every broken command of every page."""
    problems = [f"{cmd}\n    -> {p}" for cmd in shell_commands() for p in check_command(cmd, tmp_path)]
    assert not problems, "commands in the docs that would fail as written:\n" + "\n".join(problems)


def test_every_inline_nlpkit_usage_parses() -> None:
    """`nlpkit export RUN --out DIR [--quantize int8]` in a sentence is a command too: it must parse."""
    problems = [f"{where}: `{text}` -> {p}" for where, text in inline_usages() for p in check_usage(text)]
    assert not problems, "inline nlpkit usages that would fail as written:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, expected", [
    ("nlpkit export RUN [--quantize int8]", "the nlpkit parser refuses"),  # the README's, without --out
    ("nlpkit predict --input/--outptu", "has no option --outptu"),
    ("nlpkit exprot RUN", "no subcommand"),
])
def test_the_inline_check_fails_on_a_broken_usage(text: str, expected: str) -> None:
    assert any(expected in p for p in check_usage(text)), check_usage(text)


@pytest.mark.parametrize("text, expected", [
    ("nlpkit export outputs/sentiment-<timestamp> --quantize int8", "the nlpkit parser refuses"),  # no --out
    ("nlpkit predict RUN --top-n 3", "unrecognized arguments"),
    ("accelerate launch tasks/sentiment.py quik", "expected a preset name of sentiment"),
    ("accelerate launch tasks/sentiment.py data.text_col=review", "Unknown config key"),
    ("accelerate launch tasks/translation.py train.lr=fast", "Bad value"),
    ("accelerate launch --config_file accelerate_configs/none.yaml tasks/sentiment.py", "does not exist"),
    ("accelerate launch --no-such-flag tasks/sentiment.py", "does not accept"),
    ("python benchmarks/translation_infer.py --sentence 10", "has no option --sentence"),
    ("python benchmarks/word2vec_train.py w2v.worker=4", "Unknown config key"),
    ("pip install 'nlpkit-hf[onxx]'", "no extra 'onxx'"),
    ("pip install 'nlpkit>=0.1'", "not this distribution"),
    ("nlpkit train sentiment examples/nowhere.yaml", "does not exist"),
    ("nlpkit evaluate outputs/sentiment-<time> --data x.csv data.text_colum=review", "Unknown config key"),
    ("nlpkit assets fetch rotten-tomatoes", "not a catalog name"),
    ("pytest -m slwo", "no pytest marker"),
    ("rm -rf outputs", "no check for this program"),
    ("nlpkit export outputs/sentiment-minilm-l6 --out exports/s", "not a folder a default run makes"),
    ("python benchmarks/sentiment_infer.py --model outputs/<sentiment run>", "a placeholder with a space"),
])
def test_the_check_fails_on_a_broken_command(text: str, expected: str, tmp_path: Path) -> None:
    """The check is real: a wrong flag, key, preset, file or extra is reported (these were in the docs once)."""
    (cmd,) = [c for c in _commands_of(text, tmp_path) if c.argv]
    problems = check_command(cmd, tmp_path)
    assert any(expected in p for p in problems), problems


def _commands_of(text: str, tmp_path: Path) -> list[Command]:
    page = tmp_path / "page.md"
    page.write_text(f"```bash\n{text}\n```\n")
    return [Command("page.md", c.argv) for c in shell_commands([page])]


def test_extraction_joins_continuations_and_drops_comments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Text.\n\n    ```bash\n    A=1 nlpkit predict RUN \\\n        --top-k 2   # a comment\n"
                    "    pip install x && pytest -q; echo $(date) &\n    ```\n\n```python\nnot = 'shell'\n```\n")
    argvs = [c.argv for c in shell_commands([page])]
    assert argvs == [("A=1", "nlpkit", "predict", "RUN", "--top-k", "2"), ("pip", "install", "x"),
                     ("pytest", "-q"), ("echo", "SUBST")]


# ------------------------------------------------------------------------ lists and figures copied from code


def _table(page: str, header: str) -> list[list[str]]:
    """Rows of the markdown table in ``page`` whose header row starts with ``header``."""
    lines = (ROOT / page).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _built_in_tasks() -> list[str]:
    """The tasks nlpkit ships (its plugin folders), not those other tests register in this process."""
    return sorted(p.name for p in (ROOT / "nlpkit" / "plugins").iterdir() if (p / "__init__.py").is_file())


def test_configuration_page_lists_every_preset() -> None:
    from nlpkit.registry import get_task

    rows = _table("docs/configuration.md", "| task | presets |")
    listed = {row[0]: set(re.findall(r"`(\w+)`", row[1])) for row in rows}
    assert listed == {t: set(get_task(t).presets()) for t in _built_in_tasks()}


@pytest.mark.usefixtures("example_plugin")
def test_nlpkit_tasks_output_in_adding_a_task_is_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The page shows `nlpkit tasks` with the example plugin installed: that is what it prints."""
    from nlpkit.cli import console_main

    console_main(["tasks"])
    page = (ROOT / "docs" / "adding-a-task.md").read_text()
    shown = page[page.index("nlpkit tasks\n```\n\n```text\n"):].split("```text\n", 1)[1].split("```", 1)[0]
    # other tests may have registered tasks of their own in this process: compare the documented tasks' entries
    entries = re.findall(r"^\S.*\n(?:\s+.*\n)*", capsys.readouterr().out, re.M)
    documented = {e.split()[0] for e in re.findall(r"^\S.*\n(?:\s+.*\n)*", shown, re.M)}
    # the name column is as wide as the longest registered name (other tests may add longer ones): compare words
    printed = "".join(e for e in entries if e.split()[0] in documented)
    assert printed.split() == shown.split()


def test_preset_lists_quoted_from_error_messages_are_complete() -> None:
    """An error message quoted in the docs (`expected a preset name of sentiment (gpu, quick)`) lists every
    preset, as the real message does."""
    from nlpkit.registry import get_task

    quoted = 0
    for page in DOCS:
        for task, names in re.findall(r"preset name of (\w+) \(([^)]*)\)", page.read_text()):
            assert names.split(", ") == sorted(get_task(task).presets()), (page.name, task, names)
            quoted += 1
    assert quoted >= 1


def test_per_task_training_defaults_table_matches_the_code() -> None:
    from nlpkit.config import load_config
    from nlpkit.registry import get_task

    rows = _table("docs/configuration.md", "| option | sentiment |")
    header = [h.strip() for h in next(ln for ln in (ROOT / "docs/configuration.md").read_text().splitlines()
                                       if ln.startswith("| option | sentiment |")).strip("|").split("|")]
    tasks = header[1:]
    for row in rows:
        key = re.findall(r"`([\w.]+)`", row[0])[0].removeprefix("train.")
        for task, shown in zip(tasks, row[1:], strict=True):
            # LoRA adapts a pretrained model: translation's default (model=scratch) refuses it; its `lora` preset's
            extra = (["train.lora=true", *(["model=smollm2-135m"] if task == "translation" else [])]
                     if "lora=true" in row[0] else [])
            cfg = load_config(get_task(task).Config, None, [*extra, f"task={task}"])
            value = getattr(cfg.train, key)
            assert str(value).lower() in (shown.lower(), str(float(shown)) if re.fullmatch(r"[\d.e-]+", shown)
                                          else shown.lower()), (task, row[0], value, shown)


def test_preset_files_quoted_in_the_docs_are_the_files() -> None:
    from nlpkit.registry import get_task

    quoted = 0
    for page in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            m = re.search(r"^#\s+accelerate launch tasks/(\w+)\.py (\w+)$", block, re.M)
            if m and m.group(2) in get_task(m.group(1)).presets():
                assert block == get_task(m.group(1)).presets()[m.group(2)].read_text(), (page, m.groups())
                quoted += 1
    assert quoted >= 1


def test_adding_a_task_shows_the_example_pyproject_as_it_is() -> None:
    page = (ROOT / "docs" / "adding-a-task.md").read_text()
    real = (ROOT / "examples" / "nlpkit-text-regression" / "pyproject.toml").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", page, re.S) if "[build-system]" in b]
    assert blocks == [real]
    assert '"nlpkit-hf' in real and tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == \
        "nlpkit-hf"


def test_dev_extra_is_described_as_it_is() -> None:
    """The Quickstart names every package of the `dev` extra (it once said "pytest and ruff")."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    page = " ".join((ROOT / "docs" / "quickstart.md").read_text().split())
    missing = [d for d in (re.split(r"[<>=\[]", r)[0] for r in dev) if d not in page]
    assert not missing, missing


def test_fsdp_recipes_wrap_layers_the_default_models_have() -> None:
    """`--fsdp_transformer_layer_cls_to_wrap` names in the docs and accelerate_configs exist in the task's default
    model (translation's from-scratch model is an M2M100: it has no MarianEncoderLayer)."""
    from tokenizers import Tokenizer, models
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from nlpkit.plugins.translation.config import ScratchConfig
    from nlpkit.plugins.translation.scratch import build_scratch_model

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2},
                                                                             unk_token="<unk>")),
                                  pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    scratch = build_scratch_model(ScratchConfig(d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2,
                                                ffn_dim=32), tok)
    bert = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                    intermediate_size=32, vocab_size=50))
    layers = {"translation": {type(m).__name__ for m in scratch.modules()},
              "sentiment": {type(m).__name__ for m in bert.modules()}}
    recipe = re.compile(r"--fsdp_transformer_layer_cls_to_wrap\s+([\w,]+)(?:\s+\\?\s*#?\s*--\S+\s+\S+)*\s+\\?\s*#?"
                        r"\s*tasks/(\w+)\.py")
    found = 0
    for path in [*DOCS, *(ROOT / "accelerate_configs").iterdir()]:
        for classes, task in recipe.findall(path.read_text()):
            found += 1
            assert set(classes.split(",")) <= layers[task], (path.name, task, classes)
    assert found >= 4


def test_nlpkit_presets_prints_whole_sentences_and_launch_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """`nlpkit presets` prints what the docs say: each preset's purpose (not a line cut mid-sentence) and its
    launch line."""
    from nlpkit.cli import console_main

    console_main(["presets", "sentiment"])
    out = " ".join(capsys.readouterr().out.split())
    assert "$ accelerate launch tasks/sentiment.py lora" in out
    assert "$ nlpkit tune sentiment sweep --space examples/spaces/sentiment.yaml --trials 12" in out
    # the lora preset's first comment line ends with "..., the": its whole first sentence is printed
    assert "the new classification head trained in full beside them" in out


def test_nlpkit_generate_keeps_the_runs_length_default() -> None:
    """Without --max-new-tokens, `nlpkit generate` passes no length: the run's generate.max_new_tokens (48 by
    default, as the docs say) applies, not a command-line default of 64."""
    from nlpkit.cli import build_parser
    from nlpkit.plugins.generation.cli import decoding_options

    args = build_parser().parse_args(["generate", "RUN", "prompt"])
    assert "max_new_tokens" not in decoding_options(args)
    assert "no_repeat_ngram_size" not in decoding_options(args)
    args = build_parser().parse_args(["generate", "RUN", "prompt", "--max-new-tokens", "20"])
    assert decoding_options(args)["max_new_tokens"] == 20


def test_pipeline_leaves_the_batch_size_to_the_task() -> None:
    """`pipe(prompts)` uses the task's own default batch (generation: generate.batch_size) unless one is given."""
    from nlpkit.pipeline import Pipeline

    seen: list[dict[str, Any]] = []

    class Task:
        def predict(self, inputs: list[Any], **kwargs: Any) -> list[Any]:
            seen.append(kwargs)
            return inputs

    pipe = Pipeline(Task())  # type: ignore[arg-type]
    assert pipe("a") == "a" and pipe(["a", "b"], batch_size=8, top_k=2) == ["a", "b"]
    assert seen == [{}, {"batch_size": 8, "top_k": 2}]


def test_generate_help_states_the_real_default(capsys: pytest.CaptureFixture[str]) -> None:
    from nlpkit.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    assert "default 64" not in capsys.readouterr().out


#: Phrases of the developers' machine and of the project's history, which a user's manual has no use for.
DEV_HISTORY = ["flock /tmp", "quiet machine", "dev machine", "device call", "30-minute", "in our runs",
               "per-micro-batch mean", "became a package", "speed drifts", "16 cores", "that machine"]


def test_the_manual_speaks_of_the_users_machine_not_the_developers() -> None:
    """No lock files of a shared dev box, no "quiet machine" or "30-minute budget", no history of the code: not in
    the pages and presets, and not in what the code prints (help texts, docstrings: the first phrases)."""
    pages = [*DOCS, *(ROOT / "nlpkit" / "plugins").rglob("*.yaml"), *(ROOT / "accelerate_configs").glob("*.yaml")]
    code = [*(ROOT / "nlpkit").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    found = [f"{p.relative_to(ROOT)}: {phrase!r}" for p in pages for phrase in DEV_HISTORY
             if phrase in p.read_text().lower()]
    found += [f"{p.relative_to(ROOT)}: {phrase!r}" for p in code for phrase in DEV_HISTORY[:6]
              if phrase in p.read_text().lower()]
    assert not found, found


def test_front_pages_link_to_figures_instead_of_repeating_them() -> None:
    """A figure lives on one page (with its machine and date); the README and the home page link to it."""
    figure = re.compile(r"\b\d+ min \d+ s\b|\b\d+\.\d+x\b|\b0\.\d{4}\b|\b\d+\.\d+ GiB\b|BLEU \*?\*?\d")
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        assert not figure.findall(page.read_text()), (page.name, figure.findall(page.read_text()))


def test_inference_ratios_agree_with_their_own_table() -> None:
    """The int8 exploration quotes the kept paths' speed from the quiet table: 198/173 and 231/173 texts/s."""
    rows = {r[0]: float(r[1].strip("*")) for r in _table("docs/inference.md", "| pipeline | texts/s |")}
    pytorch = rows["nlpkit PyTorch"]
    page = (ROOT / "docs" / "inference.md").read_text()
    kept = "nlpkit ONNX int8, output projections kept fp32, no fallback (`--fallback-margin 0`)"
    for name in ("nlpkit ONNX fp32", kept):
        assert f"{rows[name] / pytorch:.2f}x nlpkit's PyTorch path" in page or \
            f"at {rows[name] / pytorch:.2f}x" in page, name
    assert "1.95x" not in page and "3.43x" not in page


def test_readme_links_point_at_files_and_headings_that_exist() -> None:
    """The README is not part of the strict mkdocs build, so its links are checked here."""
    def anchors(page: Path) -> set[str]:  # mkdocs' toc slugs: lowercase, punctuation dropped, spaces -> "-"
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}

    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if not (ROOT / path).exists():
            broken.append(target)
        elif anchor and path.endswith(".md") and anchor not in anchors(ROOT / path):
            broken.append(target)
    assert not broken, broken


def _python_blocks() -> list[tuple[str, str]]:
    import textwrap

    found = []
    for page in DOCS:
        for m in re.finditer(r"^(\s*)```python\n(.*?)^\s*```", page.read_text(), re.S | re.M):
            found.append((page.relative_to(ROOT).as_posix(), textwrap.dedent(m.group(2))))
    return found


def test_python_examples_parse_and_name_what_nlpkit_has() -> None:
    """Every ```python block parses, and what it imports from nlpkit (`from nlpkit.x import y`, `nlpkit.y`)
    exists."""
    import ast
    import importlib

    missing = []
    for where, code in _python_blocks():
        tree = ast.parse(code, filename=where)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nlpkit":
                module = importlib.import_module(node.module)
                missing += [f"{where}: {node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nlpkit"
                  and not hasattr(importlib.import_module("nlpkit"), node.attr)):
                missing.append(f"{where}: nlpkit.{node.attr}")
    assert len(_python_blocks()) > 20
    assert not missing, missing
