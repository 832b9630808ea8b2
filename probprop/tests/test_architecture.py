"""The import graph: no cycle, and no import from a lower layer to a higher one.

Layers, lowest first (a module may import its own layer and those below it, also inside a
function): formulas and helpers; likelihood and layer pieces; learners, and the data, metrics
and distribution helpers beside them; the model-file format; the estimators; plots; the demo
and the benchmarks; the command line; the package root (which re-exports).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]

LAYERS = [
    ("probprop._version", 0),
    ("probprop._compute_once", 0),
    ("probprop._cache", 0),
    ("probprop._workers", 0),
    ("probprop.distributed", 3),
    ("probprop.preprocessing", 0),
    ("probprop.moments", 0),
    ("probprop.likelihoods", 1),
    ("probprop.layers", 1),
    ("probprop.learners", 2),
    ("probprop.distributions", 2),
    ("probprop.metrics", 2),
    ("probprop.data", 2),
    ("probprop.io", 3),
    ("probprop.estimators", 4),
    ("probprop.calibration", 4),
    ("probprop.prequential", 4),
    ("probprop.river_adapter", 4),
    ("probprop.active", 4),
    ("probprop.plots", 5),
    ("probprop.demo", 6),
    ("probprop.bench", 6),
    ("probprop.cli", 7),
    ("probprop._entry", 7),
    ("probprop.__main__", 7),
]


def rank(module: str) -> int:
    if module == "probprop":
        return 8
    for prefix, value in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return value
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tests" not in path.parts and path.name != "conftest.py":
            yield path


def imports(path: Path, top_level_only: bool = False):
    """The probprop modules ``path`` imports (``from probprop import x`` counts as probprop.x when
    x is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = []
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = any((PACKAGE.parent / Path(*candidate.split("."))).with_suffix(s).exists()
                                for s in (".py",)) or (PACKAGE.parent / Path(*candidate.split("."))).is_dir()
                names.append(candidate if is_module else node.module)
        else:
            continue
        yield from (n for n in names if n == "probprop" or n.startswith("probprop."))


def test_no_import_from_a_lower_layer_to_a_higher_one():
    wrong = []
    for path in sources():
        me = module_name(path)
        for other in imports(path):
            if rank(other) > rank(me):
                wrong.append(f"{me} (layer {rank(me)}) imports {other} (layer {rank(other)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_at_module_level():
    graph = {module_name(p): {m for m in imports(p, top_level_only=True) if m != module_name(p)} for p in sources()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
