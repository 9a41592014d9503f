"""Named pipelines: ordered lists of analyzers, and where they come from.

A registry is built once per process by :func:`load_registry` from three
sources, in this order (a later one may add to, but not silently replace, an
earlier one):

1. the built-in analyzers and pipelines (``shared.pipeline.builtin``), whose
   modules are imported when a job first creates the analyzer, not before: so
   a process that needs only the names (the api) runs without the video stack;
2. Python entry points in the group ``videoq.analyzers``: each entry point's
   name is an analyzer name and its object an analyzer factory; each such
   analyzer also gets a one-analyzer pipeline of the same name;
3. plugin callables named ``"module:function"``, called as ``function(registry)``:
   they may register analyzers and pipelines of several analyzers.
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from shared.errors import PipelineNotFound
from shared.pipeline.builtin import BUILTIN_ANALYZERS, BUILTIN_PIPELINES
from shared.pipeline.errors import PluginError

if TYPE_CHECKING:
    # Types only: the analyzer interface imports the frame, and so the video stack.
    from shared.pipeline.analyzer import Analyzer, AnalyzerFactory

__all__ = ["ENTRY_POINT_GROUP", "Pipeline", "PipelineRegistry", "load_registry"]

#: The entry point group third-party analyzers register under.
ENTRY_POINT_GROUP = "videoq.analyzers"

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
# Keys the service itself writes into the results document's summary: an
# analyzer of one of these names would overwrite them.
_RESERVED = frozenset(
    {
        "frames_decoded",
        "frames_sampled",
        "frames_undecodable",
        "frame_stride",
        "max_frames",
        "sampling",
    }
)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A named, ordered list of analyzers."""

    name: str
    analyzer_names: tuple[str, ...]
    _factories: tuple[AnalyzerFactory, ...]

    def create(self) -> list[tuple[str, Analyzer]]:
        """Fresh ``(name, analyzer)`` pairs for one job, in pipeline order."""
        created: list[tuple[str, Analyzer]] = []
        try:
            for name, factory in zip(self.analyzer_names, self._factories, strict=True):
                created.append((name, factory()))
        except BaseException:
            for _, analyzer in created:
                analyzer.close()
            raise
        return created


@dataclass(frozen=True, slots=True)
class _Deferred:
    """An analyzer factory named by ``"module:attribute"``, imported on first use."""

    path: str

    def __call__(self) -> Analyzer:
        factory: AnalyzerFactory = pkgutil.resolve_name(self.path)
        return factory()


class PipelineRegistry:
    """Analyzer factories and the pipelines built from them, by name."""

    def __init__(self) -> None:
        self._analyzers: dict[str, AnalyzerFactory] = {}
        self._pipelines: dict[str, tuple[str, ...]] = {}

    def register_analyzer(
        self, name: str, factory: AnalyzerFactory, *, replace: bool = False
    ) -> None:
        """Add an analyzer factory under ``name``.

        Raises ``ValueError`` for a malformed or reserved name, or a name already
        taken (unless ``replace``).
        """
        _check_name(name, "analyzer")
        if name in _RESERVED:
            raise ValueError(f"analyzer name {name!r} is reserved")
        if not callable(factory):
            raise ValueError(f"analyzer {name!r}: factory is not callable")
        if name in self._analyzers and not replace:
            raise ValueError(f"analyzer {name!r} is already registered")
        self._analyzers[name] = factory

    def register_pipeline(
        self, name: str, analyzer_names: Sequence[str], *, replace: bool = False
    ) -> None:
        """Add a pipeline running ``analyzer_names`` in order (an empty list is allowed).

        Raises ``ValueError`` for a malformed name, an unknown or repeated
        analyzer, or a name already taken (unless ``replace``).
        """
        _check_name(name, "pipeline")
        if isinstance(analyzer_names, str):
            raise ValueError("analyzer_names must be a sequence of names, not a string")
        names = tuple(analyzer_names)
        unknown = [n for n in names if n not in self._analyzers]
        if unknown:
            raise ValueError(f"pipeline {name!r}: unknown analyzers {unknown}")
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {name!r}: an analyzer is listed twice")
        if name in self._pipelines and not replace:
            raise ValueError(f"pipeline {name!r} is already registered")
        self._pipelines[name] = names

    def names(self) -> list[str]:
        """The pipeline names, sorted."""
        return sorted(self._pipelines)

    def analyzer_names(self) -> list[str]:
        """The analyzer names, sorted."""
        return sorted(self._analyzers)

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    def get(self, name: str) -> Pipeline:
        """The pipeline called ``name``; raises ``PipelineNotFound``."""
        try:
            names = self._pipelines[name]
        except KeyError:
            raise PipelineNotFound(name) from None
        return Pipeline(
            name=name,
            analyzer_names=names,
            _factories=tuple(self._analyzers[n] for n in names),
        )


def load_registry(
    *, plugins: Iterable[str] = (), entry_point_group: str | None = ENTRY_POINT_GROUP
) -> PipelineRegistry:
    """Build the registry: built-ins, then entry points, then ``plugins``.

    ``plugins`` are ``"module:function"`` names; each function is called with the
    registry. ``entry_point_group=None`` skips entry points (tests). Raises
    ``PluginError`` when an entry point or plugin cannot be loaded or registered.
    """
    registry = PipelineRegistry()
    for name, path in BUILTIN_ANALYZERS.items():
        registry.register_analyzer(name, _Deferred(path))
    for name, analyzer_names in BUILTIN_PIPELINES.items():
        registry.register_pipeline(name, analyzer_names)
    if entry_point_group is not None:
        for ep in sorted(entry_points(group=entry_point_group), key=lambda e: e.name):
            try:
                factory = ep.load()
                registry.register_analyzer(ep.name, factory)
                if ep.name not in registry:
                    registry.register_pipeline(ep.name, [ep.name])
            except Exception as exc:
                raise PluginError(
                    f"entry point {ep.name!r} ({ep.value}) in {entry_point_group!r}: {exc}"
                ) from exc
    for spec in plugins:
        register = _resolve(spec)
        try:
            register(registry)
        except Exception as exc:
            raise PluginError(f"plugin {spec!r} failed: {exc}") from exc
    return registry


def _resolve(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"plugin {spec!r}: expected 'module:function'")
    try:
        # The same resolution as a built-in analyzer's path (_Deferred).
        obj: Any = pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PluginError(f"plugin {spec!r} cannot be loaded: {exc}") from exc
    if not callable(obj):
        raise PluginError(f"plugin {spec!r} is not callable")
    return obj


def _check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{kind} name {name!r} must be lower-case letters, digits, '_', '-' or '.'"
            " (starting with a letter, at most 63 characters)"
        )
