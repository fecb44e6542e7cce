"""No module of src/ imports a private name (``_x``) or a private module from another module.

ruff's PLC2701 is preview-only and allows such imports inside one package, so the rule is checked here on the AST.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(source: str) -> list[str]:
    """The private names and modules an import statement of ``source`` takes from another module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{a.name}" for a in node.names if _private(a.name)]
            found += [node.module for part in node.module.split(".") if _private(part)][:1]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if any(_private(p) for p in a.name.split("."))]
    return found


def test_the_check_finds_each_form() -> None:
    assert private_imports("from cinematch.lakehouse.etl import _gate, run_etl") == ["cinematch.lakehouse.etl._gate"]
    assert private_imports("from cinematch.engines import _pgschema") == ["cinematch.engines._pgschema"]
    assert private_imports("from cinematch.engines._pgsql import translate") == ["cinematch.engines._pgsql"]
    assert private_imports("import cinematch._log as log") == ["cinematch._log"]
    assert private_imports("def f():\n    from cinematch.x import _y\n") == ["cinematch.x._y"]
    assert private_imports("from cinematch import __version__\nfrom cinematch.x import y") == []


def test_no_module_imports_a_private_name_from_another() -> None:
    offences = {
        str(path.relative_to(SRC)): found
        for path in sorted(SRC.rglob("*.py"))
        if (found := private_imports(path.read_text(encoding="utf-8")))
    }
    assert offences == {}
