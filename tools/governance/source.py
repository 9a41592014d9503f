"""Reading the tree under check: Python modules as ASTs, with the helpers
the rules share (enclosing function, string constants, identifiers).

Nothing here imports the code under check; it is read as text.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = [
    "SCANNED",
    "Module",
    "Tree",
    "call_name",
    "identifier_words",
    "string_value",
]

#: The directories whose Python code the rules read (tests and tools are not
#: the product).
SCANNED = ("shared", "services")

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class Module:
    """One Python file of the tree."""

    #: Path relative to the tree's root, with forward slashes.
    rel: str
    text: str
    tree: ast.Module
    _parents: dict[ast.AST, ast.AST] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for parent in self.nodes:
            for child in ast.iter_child_nodes(parent):
                self._parents[child] = parent

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self._parents.get(node)

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        current = self._parents.get(node)
        while current is not None:
            yield current
            current = self._parents.get(current)

    def function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The innermost function around ``node``."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, ast.FunctionDef | ast.AsyncFunctionDef):
                return ancestor
        return None

    def qualname(self, node: ast.AST) -> str:
        """``Class.method`` (or ``<module>``) of the code around ``node``."""
        names = [a.name for a in self.ancestors(node) if isinstance(a, _SCOPES)]
        return ".".join(reversed(names)) or "<module>"

    @cached_property
    def docstrings(self) -> frozenset[ast.AST]:
        """The docstring nodes (they describe; they are not code)."""
        found: set[ast.AST] = set()
        for node in self.nodes:
            if isinstance(node, (ast.Module, *_SCOPES)) and node.body:
                first = node.body[0]
                if (
                    isinstance(first, ast.Expr)
                    and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)
                ):
                    found.add(first.value)
        return frozenset(found)

    @cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node, in ``ast.walk`` order."""
        return list(ast.walk(self.tree))

    def strings(self) -> list[tuple[ast.expr, str]]:
        """Every string or bytes literal that is not a docstring, f-strings
        flattened (each placeholder becomes ``{}``). Parts of an f-string are
        not reported on their own."""
        return self._strings

    @cached_property
    def _strings(self) -> list[tuple[ast.expr, str]]:
        inside_fstring: set[int] = set()
        for node in self.nodes:
            if isinstance(node, ast.JoinedStr):
                inside_fstring.update(id(v) for v in node.values)
        found: list[tuple[ast.expr, str]] = []
        for node in self.nodes:
            if node in self.docstrings or id(node) in inside_fstring:
                continue
            if isinstance(node, ast.Constant | ast.JoinedStr):
                value = string_value(node)
                if value is not None:
                    found.append((node, value))
        return found

    def identifiers(self) -> list[tuple[ast.AST, str]]:
        """Every name the code uses or defines: imports, names, attributes,
        functions, classes, arguments and keyword arguments."""
        return self._identifiers

    @cached_property
    def _identifiers(self) -> list[tuple[ast.AST, str]]:
        found: list[tuple[ast.AST, str]] = []
        for node in self.nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append((node, alias.name))
                    if alias.asname:
                        found.append((node, alias.asname))
            elif isinstance(node, ast.ImportFrom):
                if node.module:
                    found.append((node, node.module))
                for alias in node.names:
                    found.append((node, alias.name))
                    if alias.asname:
                        found.append((node, alias.asname))
            elif isinstance(node, ast.Name):
                found.append((node, node.id))
            elif isinstance(node, ast.Attribute):
                found.append((node, node.attr))
            elif isinstance(node, _SCOPES):
                found.append((node, node.name))
            elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
                assert node.arg is not None
                found.append((node, node.arg))
        return found


class Tree:
    """The project tree under check, rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._modules: dict[str, Module | None] = {}

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def read(self, rel: str) -> str:
        return self.path(rel).read_text(encoding="utf-8")

    def module(self, rel: str) -> Module | None:
        """The parsed module at ``rel`` (``None`` if missing or not Python)."""
        if rel not in self._modules:
            path = self.path(rel)
            try:
                text = path.read_text(encoding="utf-8")
                self._modules[rel] = Module(rel, text, ast.parse(text, filename=rel))
            except (OSError, SyntaxError, UnicodeDecodeError):
                self._modules[rel] = None
        return self._modules[rel]

    def modules(self, *dirs: str) -> Iterator[Module]:
        """The parseable modules under ``dirs`` (default: :data:`SCANNED`), sorted."""
        for directory in dirs or SCANNED:
            base = self.path(directory)
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*.py")):
                if "__pycache__" in path.parts:
                    continue
                module = self.module(path.relative_to(self.root).as_posix())
                if module is not None:
                    yield module

    def unparseable(self, *dirs: str) -> Iterator[str]:
        """Python files under ``dirs`` that do not parse (a rule cannot read them)."""
        for directory in dirs or SCANNED:
            base = self.path(directory)
            if base.is_dir():
                for path in sorted(base.rglob("*.py")):
                    rel = path.relative_to(self.root).as_posix()
                    if "__pycache__" not in path.parts and self.module(rel) is None:
                        yield rel


def string_value(node: ast.AST) -> str | None:
    """The text of a string/bytes literal or f-string (placeholders as ``{}``)."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return node.value
        if isinstance(node.value, bytes):
            return node.value.decode("utf-8", "replace")
        return None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append("{}")
        return "".join(parts)
    return None


def call_name(node: ast.Call) -> str | None:
    """``f`` for ``f(...)`` and ``x.y.f(...)``."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@functools.lru_cache(maxsize=4096)
def identifier_words(name: str) -> tuple[str, ...]:
    """``EventSourceResponse`` -> event, source, response; ``DNN_TARGET_CUDA``
    -> dnn, target, cuda; ``sse_starlette.sse`` -> sse, starlette, sse."""
    return tuple(w.lower() for w in _WORD.findall(name))
