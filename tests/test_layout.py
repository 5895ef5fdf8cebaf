"""The layout's two promises: the engine never imports the application, and each room of
bot/ says what it owns."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_engine_never_imports_bot():
    offenders = {str(path.relative_to(ROOT)): sorted(n for n in _imported_modules(path)
                                                     if n == "bot" or n.startswith("bot."))
                 for path in (ROOT / "engine").rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_each_room_of_bot_has_a_docstring_of_what_it_owns():
    rooms = sorted(p.name for p in (ROOT / "bot").iterdir()
                   if p.is_dir() and (p / "__init__.py").is_file())
    assert rooms == ["adapters", "chat", "cli", "render"]
    for room in rooms:
        doc = importlib.import_module(f"bot.{room}").__doc__ or ""
        assert doc.strip() and len(doc.strip().splitlines()) == 1, room
