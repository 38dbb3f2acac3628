"""The layout's rules, checked on the source: imports run one way (cli -> analysis -> pipeline -> rl -> nets / envs
-> common), no import cycle between modules, no private name used outside its module (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "policygradex"
LAYERS = {"common": 0, "envs": 1, "nets": 1, "rl": 2, "pipeline": 3, "analysis": 4, "cli": 5, "api": 6}
"""A module may import from its own subpackage and from subpackages of a lower layer only."""
ROOT_EXPORTS = "api"
"""The one subpackage the package root may import from: the Python API it re-exports (``policygradex.run``)."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import of the package in ``path``, at any depth
    (functions and TYPE_CHECKING blocks included), relative imports resolved."""
    me = module_name(path, root)
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            names = [a.name for a in node.names]
            # `from package import submodule` imports the submodule
            modules = {n for n in names if (root.parent / (target + "." + n).replace(".", "/")).with_suffix(".py").exists()
                       or (root.parent / (target + "." + n).replace(".", "/") / "__init__.py").exists()}
            out += [(f"{target}.{n}", [], node.lineno) for n in sorted(modules)]
            if set(names) - modules:
                out.append((target, [n for n in names if n not in modules], node.lineno))
    return out


def violations(root: Path, layers: dict[str, int]) -> list[str]:
    """Every breach of the layout's rules in the package at ``root``, one line each (empty when clean)."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    problems, graph = [], {m: set() for m in modules}
    for mod, path in modules.items():
        parts = mod.split(".")
        sub = parts[1] if len(parts) > 1 else None
        if sub is not None and sub not in layers:
            problems.append(f"{path.relative_to(root)}: subpackage {sub!r} is not in the layer map")
            continue
        for target, names, line in imports_of(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if target == root.name:  # the package's root: only its version
                if set(names) - {"__version__"}:
                    problems.append(f"{where}: imports {names} from the package root")
                continue
            tsub = target.split(".")[1]
            if sub is None:
                if tsub != ROOT_EXPORTS:
                    problems.append(f"{where}: the package root imports {target}")
            elif tsub != sub and layers.get(tsub, 99) >= layers[sub]:
                problems.append(f"{where}: {sub} (layer {layers[sub]}) imports {target} (layer {layers.get(tsub)}): "
                                "an upward or sideways import")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{where}: imports private {private} from {target}")
            if target in graph and target != mod:
                graph[mod].add(target)
    # cycles between modules (a subpackage's __init__ importing its own modules is not a cycle through them)
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if m.startswith(t + ".") or t.startswith(m + "."):
                continue  # a package and its own modules
            if state.get(t) == 1:
                problems.append("import cycle: " + " -> ".join(stack[stack.index(t):] + [m, t]))
            elif t not in state:
                visit(t, stack + [m] if t not in stack else stack)
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return problems


def test_the_package_follows_the_layout() -> None:
    assert violations(PACKAGE, LAYERS) == []


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS)
    assert [p.name for p in PACKAGE.glob("*.py")] == ["__init__.py"], "modules belong in a subpackage"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_catches_upward_imports_cycles_and_private_names(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(root, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "from pkg.high.b import thing\n",          # upward
        "low/c.py": "def f():\n    from pkg.low.d import g\n",  # cycle c -> d -> c, one import inside a function
        "low/d.py": "from pkg.low.c import f\ng = 1\n",
        "high/__init__.py": "",
        "high/b.py": "from pkg.low.c import _hidden\nthing = 1\n",  # private name across modules
        "high/e.py": "from pkg.low import c\nfrom pkg.high.b import thing\n",  # fine: downward, same subpackage
    })
    found = violations(root, {"low": 0, "high": 1})
    assert any("low/a.py:1" in p and "upward" in p for p in found), found
    assert any(p.startswith("import cycle") and "pkg.low.c" in p and "pkg.low.d" in p for p in found), found
    assert any("high/b.py:1" in p and "_hidden" in p for p in found), found
    assert not any("high/e.py" in p for p in found), found
    assert len(found) == 3, found
