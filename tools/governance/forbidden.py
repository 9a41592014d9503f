"""Concepts the spec forbids in phase 16, found in the code (not in comments
or docstrings, which may explain why they are absent).

- WebSockets: any WebSocket name, import or route.
- Real-time streaming: Server-Sent Events (``text/event-stream``,
  ``EventSourceResponse``, ``sse``) and ``multipart/x-mixed-replace``.
  Streaming a finished results document (``StreamingResponse``) is a download,
  not real-time, and is allowed.
- GPU scheduling: CUDA, NVIDIA, GPU device selection, in the code and as
  resources in the deployment files.
- Multi-pipeline DAG orchestration: DAG names and libraries, and pipeline
  stages (analyzers, ``Pipeline``) that reach for other pipelines.
- Frame-level progress: every call of a progress callback must sit under a
  condition on the clock (throttled), and the worker writes progress to the
  job row only from its heartbeat loop (a ``while`` loop that sleeps).
  The repository assigns a non-constant ``progress`` only in ``heartbeat``.

Several worker replicas consuming one queue are allowed: it is how the
deployment scales.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator

from tools.governance.core import Context, Rule, Violation
from tools.governance.source import Module, call_name, identifier_words

__all__ = ["RULES"]

# ---- WebSockets ------------------------------------------------------------------


def _websocket(ctx: Context) -> Iterator[Violation]:
    for module in ctx.tree.modules():
        seen: set[tuple[int, str]] = set()
        for node, name in module.identifiers():
            if "websocket" in name.lower():
                line = getattr(node, "lineno", 0)
                if (line, name) not in seen:
                    seen.add((line, name))
                    yield Violation(
                        "forbidden.websocket", module.rel, line, f"WebSocket name `{name}`"
                    )


# ---- real-time streaming -----------------------------------------------------------

_STREAM_MEDIA = re.compile(r"text/event-stream|multipart/x-mixed-replace", re.IGNORECASE)


def _is_streaming_name(name: str) -> bool:
    words = identifier_words(name)
    pairs = set(itertools.pairwise(words))
    return "sse" in words or ("event", "source") in pairs or ("server", "sent") in pairs


def _streaming(ctx: Context) -> Iterator[Violation]:
    for module in ctx.tree.modules():
        seen: set[tuple[int, str]] = set()
        for node, name in module.identifiers():
            line = getattr(node, "lineno", 0)
            if _is_streaming_name(name) and (line, name) not in seen:
                seen.add((line, name))
                yield Violation(
                    "forbidden.streaming",
                    module.rel,
                    line,
                    f"real-time streaming (Server-Sent Events): `{name}`",
                )
        for node, text in module.strings():
            match = _STREAM_MEDIA.search(text)
            if match:
                yield Violation(
                    "forbidden.streaming",
                    module.rel,
                    node.lineno,
                    f"real-time streaming media type `{match.group(0)}`",
                )


# ---- GPU scheduling ------------------------------------------------------------------

_GPU_WORDS = {"cuda", "cudnn", "gpu", "gpus", "nvidia", "nvenc", "nvdec", "cupy", "tensorrt"}
_GPU_TEXT = re.compile(r"(?<![a-z])(cuda|cudnn|gpus?|nvidia|nvenc|nvdec)(?![a-z])", re.IGNORECASE)
#: Deployment files where a GPU would be requested (``nvidia.com/gpu``, compose
#: device reservations, ``runtime: nvidia``).
_DEPLOY_GLOBS = ("deploy/**/*.yaml", "deploy/**/*.yml", "compose.yaml", "compose.yml")


def _gpu(ctx: Context) -> Iterator[Violation]:
    for module in ctx.tree.modules():
        seen: set[tuple[int, str]] = set()
        for node, name in module.identifiers():
            line = getattr(node, "lineno", 0)
            if _GPU_WORDS & set(identifier_words(name)) and (line, name) not in seen:
                seen.add((line, name))
                yield Violation("forbidden.gpu", module.rel, line, f"GPU scheduling: `{name}`")
        for node, text in module.strings():
            match = _GPU_TEXT.search(text)
            if match:
                yield Violation(
                    "forbidden.gpu", module.rel, node.lineno, f"GPU scheduling: {text!r}"
                )
    files = sorted({p for pattern in _DEPLOY_GLOBS for p in ctx.root.glob(pattern)})
    for path in files:
        rel = path.relative_to(ctx.root).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            match = _GPU_TEXT.search(code)
            if match:
                yield Violation(
                    "forbidden.gpu",
                    rel,
                    number,
                    f"GPU scheduling in a deployment: {code.strip()!r}",
                )


# ---- multi-pipeline DAG orchestration ---------------------------------------------------

_DAG_WORDS = {"dag", "dags"}
_DAG_MODULES = {"networkx", "graphlib", "airflow", "prefect", "dagster", "luigi"}
#: Words of names that reach the pipeline registry or run a pipeline.
_PIPELINE_RUNNERS = {"registry", "pipelines"}
_PIPELINE_SERVICE = "VideoFilePipelineService"
_STAGE_MODULES = "shared/pipeline/analyzers/"


def _in_stage(module: Module, node: ast.AST) -> bool:
    """Inside a pipeline stage: an analyzer module, or the ``Pipeline`` class."""
    if module.rel.startswith(_STAGE_MODULES):
        return True
    return any(isinstance(a, ast.ClassDef) and a.name == "Pipeline" for a in module.ancestors(node))


def _dag(ctx: Context) -> Iterator[Violation]:
    for module in ctx.tree.modules():
        seen: set[tuple[int, str]] = set()
        for node, name in module.identifiers():
            line = getattr(node, "lineno", 0)
            if (line, name) in seen:
                continue
            words = set(identifier_words(name))
            top = name.split(".")[0]
            if words & _DAG_WORDS or name == "TopologicalSorter":
                message = f"DAG orchestration: `{name}`"
            elif isinstance(node, ast.Import | ast.ImportFrom) and top in _DAG_MODULES:
                message = f"DAG orchestration library `{top}`"
            elif (_PIPELINE_RUNNERS & words or name == _PIPELINE_SERVICE) and _in_stage(
                module, node
            ):
                message = (
                    f"a pipeline stage uses `{name}`: pipelines run analyzers,"
                    " never other pipelines"
                )
            else:
                continue
            seen.add((line, name))
            yield Violation("forbidden.dag", module.rel, line, message)


# ---- frame-level progress -----------------------------------------------------------------

_CLOCKS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns"}
_PROGRESS_CALLBACK = re.compile(r"^(on_progress|report_progress|progress_callback)$")
_HEARTBEAT = "_heartbeat"


def _reads_clock(node: ast.AST, timed: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and call_name(sub) in _CLOCKS:
            return True
        if isinstance(sub, ast.Name) and sub.id in timed:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in timed:
            return True
    return False


def _timed_names(function: ast.AST) -> set[str]:
    """Names (and ``self.x`` attributes) assigned from the clock, directly or
    through other such names."""
    timed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in ast.walk(function):
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets, value = [node.target], node.value
            if value is None or not _reads_clock(value, timed):
                continue
            for target in targets:
                for sub in ast.walk(target):
                    name = (
                        sub.id
                        if isinstance(sub, ast.Name)
                        else sub.attr
                        if isinstance(sub, ast.Attribute)
                        else None
                    )
                    if name and name not in timed:
                        timed.add(name)
                        changed = True
    return timed


def _throttled(module: Module, call: ast.Call) -> bool:
    """Under an ``if``/``while`` whose condition reads the clock."""
    function = module.function(call)
    timed = _timed_names(function) if function is not None else set()
    for ancestor in module.ancestors(call):
        if ancestor is function:
            break
        if isinstance(ancestor, ast.If | ast.While) and _reads_clock(ancestor.test, timed):
            return True
    return False


def _is_heartbeat_loop(function: ast.AST | None) -> bool:
    """A function named ``_heartbeat`` whose ``while`` loop sleeps."""
    if not isinstance(function, ast.AsyncFunctionDef | ast.FunctionDef):
        return False
    if function.name != _HEARTBEAT:
        return False
    for loop in ast.walk(function):
        if isinstance(loop, ast.While):
            for sub in ast.walk(loop):
                if isinstance(sub, ast.Call) and call_name(sub) == "sleep":
                    return True
    return False


def _receiver(call: ast.Call) -> str:
    func = call.func
    return ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""


def _writes_progress(call: ast.Call) -> bool:
    """A call that stores progress: ``heartbeat(...)``, or a repository call
    with a ``progress=`` argument."""
    if call_name(call) == "heartbeat":
        return True
    has_progress = any(k.arg == "progress" for k in call.keywords)
    return has_progress and "repo" in _receiver(call).lower()


_PROGRESS_SET = re.compile(r"(?:^|[\s,(])progress\s*=(?![=>])\s*([^,]*)", re.IGNORECASE)
_CONSTANT = re.compile(r"^\s*(\d+(\.\d+)?|NULL)\s*$", re.IGNORECASE)


def _frame_progress(ctx: Context) -> Iterator[Violation]:
    rule = "forbidden.frame-progress"
    for module in ctx.tree.modules():
        in_repository = module.rel.startswith("shared/repository/")
        for node in module.nodes:
            if not isinstance(node, ast.Call):
                continue
            name = call_name(node) or ""
            if _PROGRESS_CALLBACK.match(name) and not _throttled(module, node):
                yield Violation(
                    rule,
                    module.rel,
                    node.lineno,
                    f"`{name}(...)` is not under a condition on the clock: progress must be"
                    " throttled to an interval, never reported per frame",
                )
            if (
                not in_repository
                and _writes_progress(node)
                and not _is_heartbeat_loop(module.function(node))
            ):
                yield Violation(
                    rule,
                    module.rel,
                    node.lineno,
                    f"`{ast.unparse(node.func)}(...)` writes progress outside the worker's"
                    f" `{_HEARTBEAT}` loop (a `while` loop that sleeps)",
                )
        if not in_repository:
            continue
        for node, text in module.strings():
            for match in _PROGRESS_SET.finditer(text):
                if _CONSTANT.match(match.group(1)):
                    continue
                function = module.function(node)
                if function is None or function.name != "heartbeat":
                    yield Violation(
                        rule,
                        module.rel,
                        node.lineno,
                        f"SQL sets progress to `{match.group(1).strip()}` outside the"
                        " repository's `heartbeat`",
                    )


RULES = [
    Rule("forbidden.websocket", "no WebSocket routes or imports", _websocket),
    Rule("forbidden.streaming", "no real-time streaming endpoints (SSE)", _streaming),
    Rule("forbidden.gpu", "no GPU scheduling", _gpu),
    Rule("forbidden.dag", "no multi-pipeline DAG orchestration", _dag),
    Rule(
        "forbidden.frame-progress",
        "progress is throttled and written only by the worker's heartbeat",
        _frame_progress,
    ),
]
