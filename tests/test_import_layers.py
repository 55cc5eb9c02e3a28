"""The layering of DEVELOPERS.md, checked statically: every import points down, no circles.

The layers, bottom to top, are declared once in `LAYERS` (each a tuple of top-level folders of
`src/samkit`). A module may import modules of its own folder, of a lower layer, or of another
folder of its own layer, provided the folders do not import each other in a loop
(`test_no_folder_loops`). The package root `samkit` (its `__init__` imports nothing at run time)
may be imported from anywhere for `__version__`; `samkit.__main__` sits above everything.

No import circles among samkit modules either:

The rule. Every `.py` file under `src/samkit` is a node, named by its dotted module name (a
package is its `__init__`). An edge A -> B is an explicit import in A's source of the samkit
module B, wherever the import statement sits: at module level, inside a function (a lazy
import), or under `try:`. Imports under `if TYPE_CHECKING:` are not edges (they never run).
`from P import n` is an edge to the module `P.n` when that file exists (importing a submodule),
otherwise to `P` (importing a name from P). Python initialises a parent package before any of
its submodules; that implicit step is not an edge, so a package `__init__` may import its own
submodules (e.g. the CLI package imports its commands) and those submodules may import their
siblings. The graph must have no cycle: a lazy import still means "A needs B", and a cycle of
needs is a circle of dependencies however it is timed at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "samkit"


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The samkit modules that the file at `path` imports (see the module docstring's rule)."""
    module = _module_name(path, src)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else (node.module or "")
            )
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module name -> the samkit modules it imports, for every module under src/samkit."""
    files = sorted(PKG.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


LAYERS: tuple[tuple[str, ...], ...] = (
    ("configs", "layers", "text"),  # dataclasses, nn building blocks, the SAM 3 tokenizer
    ("io",),  # images, atomic files, mask codec, embedding files, provenance: no models
    ("modeling",),  # nn.Modules only: tensors in, tensors out
    ("runtime", "checkpoint"),  # precision / int8 / compile; reading and fetching weights
    ("build",),  # checkpoint -> model, family detection, the family registry
    ("predict",),  # image predictors, one module per family, and their inputs / transforms
    ("amg", "video", "export", "train"),  # automatic masks, tracking, ONNX, fine-tuning
    ("jobs",),  # the per-image work shared by the CLI and Ray
    ("distributed", "server"),  # Ray Data labelling, the web app
    ("cli",),  # every sub-command
)
ROOT_MODULES = {"samkit", "samkit.__main__"}
# Upward imports still to remove: none since issue #19; the set may only shrink.
KNOWN_UPWARD: set[str] = set()


def layer_of(module: str) -> int:
    """The rank of `module`'s top-level folder in `LAYERS` (0 = bottom); ValueError if undeclared."""
    folder = module.split(".")[1]
    for rank, folders in enumerate(LAYERS):
        if folder in folders:
            return rank
    raise ValueError(f"{module}: folder {folder!r} is in no layer of LAYERS; declare it there")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each `A -> B` where B's layer is above A's (lazy imports included)."""
    out = []
    for a in sorted(graph):
        if a in ROOT_MODULES:
            continue
        for b in sorted(graph[a]):
            if b not in ROOT_MODULES and layer_of(b) > layer_of(a):
                out.append(f"{a} -> {b}")
    return out


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level folder -> the other top-level folders its modules import."""
    out: dict[str, set[str]] = {}
    for a, deps in graph.items():
        if a in ROOT_MODULES:
            continue
        fa = a.split(".")[1]
        out.setdefault(fa, set())
        for b in deps:
            if b not in ROOT_MODULES and b.split(".")[1] != fa:
                out[fa].add(b.split(".")[1])
    return out


def test_every_folder_is_in_a_layer() -> None:
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    declared = {f for layer in LAYERS for f in layer}
    assert folders | modules == declared, (
        f"undeclared: {sorted((folders | modules) - declared)}; "
        f"declared but absent: {sorted(declared - folders - modules)}"
    )


def test_every_import_points_down() -> None:
    up = upward_imports(import_graph())
    assert set(up) >= KNOWN_UPWARD, f"fixed, remove from KNOWN_UPWARD: {KNOWN_UPWARD - set(up)}"
    up = [u for u in up if u not in KNOWN_UPWARD]
    assert not up, "imports that point up the layers of LAYERS:\n" + "\n".join(up)


def test_no_folder_loops() -> None:
    graph = import_graph()
    for edge in KNOWN_UPWARD:
        a, b = edge.split(" -> ")
        graph[a] = graph[a] - {b}
    loops = find_cycles(folder_graph(graph))
    assert not loops, f"folders that import each other in a loop: {loops}"


def test_the_layer_rule_sees_an_upward_import(tmp_path: Path) -> None:
    # An injected upward import (modeling -> predict) and a sideways loop (amg <-> video) are
    # reported; a downward one (predict -> modeling) is not.
    graph = {
        "samkit.modeling.sam": {"samkit.predict.sam", "samkit.layers.mlp"},
        "samkit.predict.sam": {"samkit.modeling.sam", "samkit"},
        "samkit.amg.x": {"samkit.video.y"},
        "samkit.video.y": {"samkit.amg.x"},
        "samkit.layers.mlp": set(),
    }
    assert upward_imports(graph) == ["samkit.modeling.sam -> samkit.predict.sam"]
    assert find_cycles(folder_graph(graph)) == [["amg", "video"], ["modeling", "predict"]]
    pkg = tmp_path / "src" / "samkit"
    (pkg / "modeling").mkdir(parents=True)
    (pkg / "modeling" / "sam.py").write_text("def f():\n    from samkit.predict.sam import P\n")
    modules = {"samkit.modeling.sam", "samkit.predict.sam"}
    deps = _imports(pkg / "modeling" / "sam.py", modules, tmp_path / "src")
    assert upward_imports({"samkit.modeling.sam": deps}) == [
        "samkit.modeling.sam -> samkit.predict.sam"
    ]
    with pytest.raises(ValueError, match="in no layer"):
        layer_of("samkit.newfolder.x")


def test_the_rule_sees_a_lazy_cycle(tmp_path: Path) -> None:
    # The checker itself: a lazy (function-level) import that closes a circle is reported, a
    # TYPE_CHECKING import is not, and a package importing its own submodule is fine.
    graph = {
        "samkit.a": {"samkit.b"},
        "samkit.b": {"samkit.a"},
        "samkit.cli": {"samkit.cli.x"},
        "samkit.cli.x": {"samkit.cli.common"},
        "samkit.cli.common": set(),
    }
    assert find_cycles(graph) == [["samkit.a", "samkit.b"]]
    pkg = tmp_path / "src" / "samkit"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from samkit import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from samkit.a import f\n"
        "from samkit.c import g\n"
    )
    (pkg / "c.py").write_text("from . import a\ng = 1\n")
    modules = {"samkit", "samkit.a", "samkit.b", "samkit.c"}
    src = tmp_path / "src"
    deps = {m: _imports(pkg / f"{m[7:]}.py", modules, src) for m in sorted(modules)[1:]}
    assert deps == {"samkit.a": {"samkit.b"}, "samkit.b": {"samkit.c"}, "samkit.c": {"samkit.a"}}
    assert find_cycles(deps) == [["samkit.a", "samkit.b", "samkit.c"]]


def test_no_import_cycles_in_samkit() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "samkit.cli" in graph and "samkit.configs.sam" in graph
    cycles = find_cycles(graph)
    detail = "\n".join(
        " <-> ".join(c) + "\n  " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c)
        for c in cycles
    )
    assert not cycles, f"import circles among samkit modules:\n{detail}"
