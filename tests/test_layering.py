"""The flows of dispatcher/ depend one way: the alert path never reaches into the web side.

An alert must be stored, escalated and sent whatever happens to the HTTP side
(docs/architecture.md, "Inside one dispatcher"): a module of the alert path,
the directory side or the fleet that imported the web side would tie them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DISPATCHER = Path(__file__).resolve().parents[1] / "dispatcher"
BELOW_THE_WEB = ("alerting", "directory", "fleet")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name a file imports (``from x import y`` gives ``x`` and ``x.y``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", BELOW_THE_WEB)
def test_the_package_does_not_import_the_web_side(package: str) -> None:
    files = sorted((DISPATCHER / package).rglob("*.py"))
    assert files, f"dispatcher/{package}/ is empty"
    offenders = {str(f.relative_to(DISPATCHER)): web_imports(f) for f in files}
    assert not {f: m for f, m in offenders.items() if m}


def web_imports(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.startswith("dispatcher.web"))


def test_the_web_side_is_detected() -> None:
    """The check above sees an import of the web side where there is one (the visits use its User)."""
    assert "dispatcher.web.auth" in web_imports(DISPATCHER / "visits" / "runner.py")
