"""No import circle in shared/ or services/.

A circle works until someone imports its modules in another order. grimp (the
graph behind import-linter) reads every import statement without running the
code, also those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import graphlib

import grimp
import pytest

pytestmark = pytest.mark.unit


def _circle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle of ``graph`` (its first module repeated at the end), or None."""
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_module_imports_itself_through_others():
    circle = _circle(grimp.build_graph("shared", "services", cache_dir=None))
    assert circle is None, f"import circle: {' -> '.join(circle)}"


def test_the_check_sees_a_circle_closed_by_an_import_inside_a_function(tmp_path, monkeypatch):
    package = tmp_path / "circular"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "registry.py").write_text("def load():\n    from circular import builtin\n")
    (package / "builtin.py").write_text("from circular.registry import load\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    circle = _circle(grimp.build_graph("circular", cache_dir=None))
    assert circle is not None and set(circle) == {"circular.registry", "circular.builtin"}
