"""The three dependency lists agree: requirements.txt, requirements.lock, environment.yml."""

import re

import yaml

from conftest import REPO

# conda-forge names that differ from PyPI's.
CONDA_TO_PYPI = {"python-graphviz": "graphviz"}
# conda-only entries: the interpreter, pip itself, and Graphviz's `dot` program.
CONDA_ONLY = {"python", "pip", "graphviz"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    out = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[normalise(name)] = version
    return out


def conda_pins():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, _, version = dep.partition("=")
            if name not in CONDA_ONLY:
                out[normalise(CONDA_TO_PYPI.get(name, name))] = version
    return out, env


def test_environment_yml_pins_the_same_packages_as_requirements():
    assert conda_pins()[0] == pins("requirements.txt")


def test_environment_yml_uses_python_312_and_conda_forge():
    _, env = conda_pins()
    assert "python=3.12" in env["dependencies"]
    assert env["channels"][0] == "conda-forge"


def test_lock_contains_every_direct_pin_at_its_version():
    lock = pins("requirements.lock")
    for name, version in pins("requirements.txt").items():
        assert lock.get(name) == version, f"{name}: requirements.txt {version}, lock {lock.get(name)}"


def test_lock_pins_everything_exactly():
    lines = [
        l for l in (REPO / "requirements.lock").read_text().splitlines() if l and not l.startswith("#")
    ]
    assert lines and all("==" in l for l in lines)
