"""Every Python snippet of README.md runs as written, on its own: no name it uses is left
undefined (imported, assigned or a builtin) and no `...` stands in for an argument.

Files the snippets name (checkpoints, images, folders) are the user's; they are not checked.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def undefined_names(code: str) -> set[str]:
    """Names read somewhere in `code` (also inside functions and comprehensions) that no
    statement of `code` binds at module level and that are not builtins."""
    top = symtable.symtable(code, "<readme>", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    missing: set[str] = set()

    def visit(table: symtable.SymbolTable) -> None:
        for s in table.get_symbols():
            name = s.get_name()
            is_module_level = table is top or s.is_global()
            unbound = name not in bound and not hasattr(builtins, name)
            if s.is_referenced() and is_module_level and unbound:
                missing.add(name)
        for child in table.get_children():
            visit(child)

    visit(top)
    return missing


def test_checker_finds_undefined_names():
    assert undefined_names("import numpy as np\nx = np.array(image)\n") == {"image"}
    assert undefined_names("d = {o: logits[i] for i, o in enumerate(ids)}\n") == {"logits", "ids"}
    assert undefined_names("def f(a):\n    return a + b\nb = f(1)\nprint(b)\n") == set()


def test_readme_has_python_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs_as_written(code):
    tree = ast.parse(code)
    assert not undefined_names(code), code
    placeholders = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value is ...]
    assert not placeholders, f"`...` used as a value on line {placeholders[0].lineno}:\n{code}"
