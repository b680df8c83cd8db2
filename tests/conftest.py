"""Shared helpers: the repository root, small configs and a Snakemake runner."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "src"))  # importable without installing (e.g. in a conda env)
BIN = Path(sys.executable).parent
TINY = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def tiny_config(**changes) -> dict:
    """A copy of tests/configs/tiny.yaml with top-level keys replaced."""
    config = copy.deepcopy(TINY)
    config.update(copy.deepcopy(changes))
    return config


def write_config(directory: Path, config: dict, name: str = "config.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path,
    config: dict | Path | None,
    *args: str,
    cores: int = 2,
    check: bool = True,
    timeout: float = 900,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` with exactly `config` (not merged over the default)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--cores", str(cores)]
    if config is not None:
        path = config if isinstance(config, Path) else write_config(workdir, config)
        cmd += ["--configfile", str(path), "--replace-workflow-config"]
    result = subprocess.run(
        cmd + list(args), capture_output=True, text=True, timeout=timeout, cwd=workdir,
        env=None if env is None else os.environ | env,
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's "Job stats" table."""
    table = output.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One complete run of tests/configs/tiny.yaml, shared by the end-to-end tests."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, tiny_config(), cores=2)
    return workdir
