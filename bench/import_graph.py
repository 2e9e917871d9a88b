"""The shape of trademl's import graph: cycles, upward imports, deferred imports, big modules.

Every ``import`` counts, including those placed inside functions (they hide cycles, they do
not remove them). Run: ``.venv/bin/python bench/import_graph.py``.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# The layers, outermost first: a module may import its own layer or any layer below it.
LAYERS = (
    # The shells: command line, HTTP server, background jobs, the demo, the quickstart and the
    # Python API.
    (
        "shells",
        (
            "trademl.cli",
            "trademl.serving",
            "trademl.jobs",
            "trademl.demo",
            "trademl.quickstart",
            "trademl.api",
        ),
    ),
    # Trading: the live loop and its brokers, above the registry it takes the champion from.
    ("trading", ("trademl.trading",)),
    # Records what the core produced: the MLflow runs, the registry, the gate.
    ("tracking", ("trademl.tracking",)),
    # A run end to end: training, tuning, backtesting a run, evaluating, the pipeline model.
    (
        "core",
        (
            "trademl.workflow",
            "trademl.panel",
            "trademl.tuning",
            "trademl.evaluation",
            "trademl.backtest.runner",
            "trademl.backtest.panel_run",
            "trademl.testing",
        ),
    ),
    (
        "core",
        (
            "trademl.preparation",
            "trademl.targets",
            "trademl.run_outputs",
            "trademl.har",
            "trademl.pipeline",
            "trademl.monitoring",
        ),
    ),
    # The research parts, each usable alone.
    ("research", ("trademl.backtest", "trademl.validation", "trademl.models")),
    ("research", ("trademl.features", "trademl.data")),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, typing: bool) -> list[tuple[str, bool]]:
    """(imported trademl module, deferred) pairs of one file; TYPE_CHECKING blocks only when
    ``typing``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    checking: set[int] = set()
    for node in ast.walk(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking.update(id(n) for child in node.body for n in ast.walk(child))
    deferred = {
        id(n)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(func)
    }
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            if target.startswith("trademl"):
                found.append((target, id(node) in deferred))
    return found


def graph(typing: bool = False) -> tuple[dict[str, set[str]], dict[str, int], int]:
    """Module → imported modules, module → lines, and how many import statements of trademl
    modules sit inside functions."""
    files = {module_name(p): p for p in SRC.joinpath("trademl").rglob("*.py")}
    edges: dict[str, set[str]] = defaultdict(set)
    lines = {m: len(p.read_text().splitlines()) for m, p in files.items()}
    n_deferred = 0
    for name, path in files.items():
        statements = set()
        for target, deferred in imports(path, name, typing):
            statement = target.rpartition(".")[0] if target not in files else target
            while target not in files and "." in target:
                target = target.rpartition(".")[0]
            if target in files and target != name:
                edges[name].add(target)
                if deferred:
                    statements.add(statement)
        n_deferred += len(statements)
    return edges, lines, n_deferred


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), package inits excluded."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in plain.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    # A package's __init__ re-exporting its modules is not a cycle worth counting.
    plain = {
        v: {w for w in ws if not v.startswith(w + ".") and not w.startswith(v + ".")}
        for v, ws in edges.items()
    }
    for v in list(plain):
        if v not in index:
            visit(v)
    return out


def rank(module: str) -> int | None:
    """The module's layer, 0 outermost; None for the foundation (config, errors, ...)."""
    for number, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return [n for n, _ in LAYERS].index(LAYERS[number][0])
    return None


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from an inner layer to an outer one."""
    found = []
    for v, ws in edges.items():
        for w in ws:
            rv, rw = rank(v), rank(w)
            if rv is not None and rw is not None and rw < rv:
                found.append((v, w))
    return sorted(found)


def main() -> None:
    for typing in (False, True):
        edges, lines, n_deferred = graph(typing)
        found = cycles(edges)
        up = upward(edges)
        print(f"== {'with' if typing else 'without'} imports for type checking only")
        print(f"modules: {len(lines)}, import edges: {sum(map(len, edges.values()))}")
        print(f"imports inside functions: {n_deferred}")
        print(f"cycles (strongly connected groups): {len(found)}")
        for group in found:
            print("  " + " <-> ".join(group))
        print(f"upward imports (inner layer -> outer layer): {len(up)}")
        for v, w in up:
            print(f"  {v} -> {w}")
    big = sorted(((n, m) for m, n in lines.items() if n > 500), reverse=True)
    print(f"modules over 500 lines: {len(big)}")
    for n, m in big:
        print(f"  {n:5d} {m}")


if __name__ == "__main__":
    main()
