"""Every accelerate config in accelerate_configs/ parses with accelerate's own loader and is documented.

accelerate validates only the top-level keys of a config file; a misspelt key under `fsdp_config` or
`deepspeed_config` is silently ignored, and YAML turns a bare `NO` / `no` into False. These tests catch both,
check that each file starts with its launch line and comments every key, and launch cpu.yaml for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

CONFIG_DIR = Path(__file__).resolve().parents[1] / "accelerate_configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
EXPECTED = {"cpu", "single_gpu", "multi_gpu_bf16", "fsdp", "deepspeed_zero2", "multi_node"}
KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _header(path: Path) -> list[str]:
    """The comment lines before the first YAML key."""
    lines = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return lines


def test_expected_configs_exist() -> None:
    assert EXPECTED <= {p.stem for p in CONFIGS}
    assert (CONFIG_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_parses_with_accelerates_loader(path: Path) -> None:
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    # A bare NO would have been read as False and left unconverted (accelerate only converts strings).
    assert isinstance(config.distributed_type, DistributedType), config.distributed_type
    assert isinstance(config.mixed_precision, str) and config.mixed_precision in {"no", "fp16", "bf16", "fp8"}
    assert config.num_processes >= 1 and config.num_machines >= 1
    if config.distributed_type == DistributedType.NO:
        assert config.num_processes == 1 and config.num_machines == 1
    else:
        assert config.num_processes % config.num_machines == 0, "num_processes is the total over all machines"
    if config.num_machines > 1:
        assert config.main_process_ip and config.main_process_port


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_header_has_its_launch_line(path: Path) -> None:
    header = "\n".join(_header(path))
    assert f"accelerate launch --config_file accelerate_configs/{path.name}" in header, header[:300]


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_every_key_is_commented(path: Path) -> None:
    """Each key has a comment on the line(s) right above it (or at the end of its line)."""
    lines = path.read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if line.lstrip().startswith("#") or not KEY_LINE.match(line):
            continue
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#") and " #" not in line:
            undocumented.append(f"line {number + 1}: {line.strip()}")
    assert not undocumented, "keys without a comment:\n" + "\n".join(undocumented)


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_nested_keys_are_real_launch_options(path: Path) -> None:
    """`accelerate launch` copies fsdp_config / deepspeed_config entries onto its options, ignoring typos."""
    raw = yaml.safe_load(path.read_text())
    options = {action.dest for action in launch_command_parser()._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        for key in raw.get(section) or {}:
            name = key if section != "fsdp_config" or key.startswith("fsdp") else f"fsdp_{key}"
            assert name in options, f"{path.name}: {section}.{key} is not an `accelerate launch` option"


def test_cpu_config_launches(tmp_path: Path) -> None:
    """`accelerate launch --config_file accelerate_configs/cpu.yaml` really runs one CPU process."""
    script = tmp_path / "probe.py"
    script.write_text(
        "from accelerate import Accelerator\n"
        "a = Accelerator()\n"
        "print('PROBE', a.distributed_type.value, a.num_processes, a.device.type, a.mixed_precision)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    result = subprocess.run(
        [*launcher, "--config_file", str(CONFIG_DIR / "cpu.yaml"), str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PROBE NO 1 cpu no" in result.stdout, result.stdout + result.stderr[-2000:]
