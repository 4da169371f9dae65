"""Layout figures of a source tree: lines, files, imports inside function bodies, the package import graph and
its cycles (issue 29's closing numbers). ``python scripts/layout_stats.py [src/semcollab] [--json]``.

Only imports of the package itself count for the graph; an import inside a function (or under
``if TYPE_CHECKING``) is counted apart because it hides an edge the module-level graph would show."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        pkg = module.split(".") if is_pkg else module.split(".")[:-1]
        pkg = pkg[: len(pkg) - node.level + 1]
        base = ".".join(pkg + ([node.module] if node.module else []))
    if node.module is None:  # from . import a, b: each name may be a module
        return [f"{base}.{a.name}" for a in node.names]
    return [base]


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def scan(root: Path) -> dict:
    top = root.name
    files = sorted(root.rglob("*.py"))
    lines = 0
    inner = 0  # imports inside function bodies (a nested function's counted once)
    inner_own = 0  # ... of semcollab's own modules: the ones that can hide a cycle
    edges: dict[str, set[str]] = {}
    edges_all: dict[str, set[str]] = {}  # with the imports inside functions: the cycles they hide
    for path in files:
        text = path.read_text()
        lines += len(text.splitlines())
        tree = ast.parse(text)
        mod = _module_name(root, path)
        is_pkg = path.name == "__init__.py"
        edges.setdefault(mod, set())
        body_nodes = []  # module-level imports (including inside top-level try/if, except TYPE_CHECKING)
        stack = list(tree.body)
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                body_nodes.append(n)
            elif isinstance(n, ast.If) and not _is_type_checking(n):
                stack.extend(n.body + n.orelse)
            elif isinstance(n, ast.Try):
                stack.extend(n.body + n.orelse + n.finalbody + [s for h in n.handlers for s in h.body])
        all_nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        seen_inner: set[int] = set()
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for m in ast.walk(n):
                    if isinstance(m, (ast.Import, ast.ImportFrom)) and id(m) not in seen_inner:
                        seen_inner.add(id(m))
                        inner += 1
                        own = ([a.name for a in m.names] if isinstance(m, ast.Import)
                               else _resolve(mod, is_pkg, m))
                        inner_own += any(t == top or t.startswith(top + ".") for t in own)
        for n in all_nodes:
            targets = [a.name for a in n.names] if isinstance(n, ast.Import) else _resolve(mod, is_pkg, n)
            edges_all.setdefault(mod, set()).update(t for t in targets if t == top or t.startswith(top + "."))
        for n in body_nodes:
            targets = [a.name for a in n.names] if isinstance(n, ast.Import) else _resolve(mod, is_pkg, n)
            for t in targets:
                if t == top or t.startswith(top + "."):
                    edges[mod].add(t)
    modules = set(edges)

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    mod_graph = {m: {o for t in ts if (o := owner(t)) and o != m} for m, ts in edges.items()}

    def pkg_of(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else parts[0]

    def packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for m, ts in graph.items():
            p = pkg_of(m)
            out.setdefault(p, set()).update(pkg_of(t) for t in ts if pkg_of(t) not in (p, top))
        return out

    pkg_graph = packages(mod_graph)
    all_graph = packages({m: {o for t in ts if (o := owner(t)) and o != m} for m, ts in edges_all.items()})
    return {"files": len(files), "lines": lines, "imports_in_functions": inner, "own_imports_in_functions": inner_own,
            "package_cycles": _cycles(pkg_graph), "module_cycles": _cycles(mod_graph),
            "package_cycles_with_function_imports": _cycles(all_graph),
            "package_graph": {k: sorted(v) for k, v in sorted(pkg_graph.items())}}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default="src/semcollab")
    ap.add_argument("--json", action="store_true", help="print everything as JSON")
    args = ap.parse_args()
    res = scan(Path(args.root))
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"files {res['files']}, lines {res['lines']}, imports inside functions {res['imports_in_functions']} "
          f"(of semcollab's own modules {res['own_imports_in_functions']})")
    print(f"package cycles {len(res['package_cycles'])}: {res['package_cycles']}")
    print(f"module cycles {len(res['module_cycles'])}: {[len(c) for c in res['module_cycles']]}")
    hidden = res["package_cycles_with_function_imports"]
    print(f"package cycles counting imports inside functions {len(hidden)}: {hidden}")


if __name__ == "__main__":
    main()
