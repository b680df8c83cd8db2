"""The package's own structure: no module imports one that imports it back (issue #27,
item 5), whether at the top of the file or inside a function."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "src/poolbench"


def imports_of_the_package() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.glob("*.py"):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "poolbench":
                parts = node.module.split(".")
                modules |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                modules |= {a.name.split(".")[1] for a in node.names if a.name.startswith("poolbench.")}
        graph[path.stem] = modules - {path.stem}
    return graph


def import_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [[start]]
    while stack:
        path = stack.pop()
        for module in sorted(graph.get(path[-1], ())):
            if module == start:
                return path + [module]
            if module not in path:
                stack.append(path + [module])
    return None


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    graph = imports_of_the_package()
    assert {"runtime", "storage", "fit", "report"} <= set(graph) and graph["runtime"] >= {"storage"}
    assert not [cycle for module in graph if (cycle := import_cycle(graph, module))]


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}, "a") is None


def test_importing_the_metrics_loads_no_jax():
    """docs/upstream.md: importing ArviZ leaves a lazy `jax` proxy that SciPy then loads
    (120-150 MB, up to half a second per job). After poolbench.metrics, power-scaling and PSIS run
    without JAX, and JAX can still be imported for real."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import poolbench.metrics\n"
        "from scipy.special import logsumexp\n"
        "logsumexp(np.zeros(3))\n"
        "print('jax' in sys.modules)\n"
        "import jax\n"
        "print(hasattr(jax, 'Array'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
