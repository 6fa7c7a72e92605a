"""The package layout's rules, checked on the source (issue 13): no module imports a `_private` name of another
project module, and the project's imports (module-level and function-level alike) form no cycle; hwmodels
imports no torch, workloads or codesign."""
import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwmodels", "workloads", "codesign")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    p = ROOT.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imports(path: Path):
    """(line, imported project module, imported names) of every import statement in `path`, at any depth."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in PACKAGES:
                yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield node.lineno, a.name, []


def _sources(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py"))


def test_no_private_name_is_imported_across_modules():
    bad = [f"{p.relative_to(ROOT)}:{line}: {mod}.{name}" for p in _sources(*PACKAGES, "tests", "benchmarks")
           for line, mod, names in _imports(p) for name in names if name.startswith("_")]
    assert not bad, "\n".join(bad)


def test_project_imports_form_no_cycle():
    graph = nx.DiGraph()
    for path in _sources(*PACKAGES):
        here = _module_name(path)
        graph.add_node(here)
        for _, mod, names in _imports(path):
            subs = [f"{mod}.{n}" for n in names if _is_module(f"{mod}.{n}")]
            for target in subs or [mod]:
                graph.add_edge(here, target)
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, cycles[:5]


@pytest.mark.parametrize("forbidden", ["torch", "workloads", "codesign", "spikingjelly"])
def test_hwmodels_never_imports(forbidden):
    bad = []
    for path in _sources("hwmodels"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == forbidden]
    assert not bad, bad
