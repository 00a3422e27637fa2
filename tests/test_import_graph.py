"""The house's shape, read from the source with `ast`: the core (`clinseek/`) imports no plugin, and no module of
`clinseek/` or `plugins/` imports another in a circle (lazy imports inside functions count: a cycle is a cycle)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "plugins" if path.is_relative_to(ROOT / "plugins") else ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = list((ROOT / "clinseek").rglob("*.py")) + list((ROOT / "plugins").rglob("*.py"))
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            # The longest known module that the target names (a `from x import y` may name a function).
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_of(module: str) -> str:
    return module.split(".")[0]


def test_no_module_imports_another_in_a_circle():
    graph = _graph()
    # A package's __init__ re-exporting its submodules is not a cycle of behaviour: drop edges from a package
    # to its own submodules before looking.
    trimmed = {m: {t for t in deps if not t.startswith(m + ".")} for m, deps in graph.items()}
    assert _cycles(trimmed) == []


def test_the_core_imports_no_plugin():
    graph = _graph()
    offenders = sorted(f"{m} -> {t}" for m, deps in graph.items() if _package_of(m) == "clinseek"
                       for t in deps if _package_of(t).startswith("clinseek_"))
    assert offenders == []


def test_importing_clinseek_loads_no_plugin_and_no_heavy_library():
    code = ("import sys, clinseek; heavy = ('duckdb', 'numpy', 'torch', 'onnxruntime', 'pydantic', 'jinja2', "
            "'httpx', 'sqlglot', 'pandas'); "
            "print(sorted(m for m in sys.modules if m.startswith('clinseek_') or m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
