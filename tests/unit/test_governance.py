"""The governance validator (tools/governance): the clean tree passes, and each
rule catches its violation on a copy of the tree with one thing broken.

The copies hold shared/, services/, docs/, deploy/ and compose.yaml; the
overlays that break them are in tests/fixtures/governance/. Rules that need
the code imported (payload.deterministic, schema.openapi, topology.docs) run
it in a child process; those that need PostgreSQL (schema.code,
schema.migrations) are in tests/integration/test_governance_schema.py.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.governance import RULES, check, select
from tools.governance.core import Context
from tools.governance.openapi import SNAPSHOT, differences, write_snapshot
from tools.governance.schema import declared_schema, statements
from tools.governance.source import Tree
from tools.governance.transitions import code_transitions, doc_table, status_writes

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "governance"
COPIED = ("shared", "services", "docs", "deploy", "compose.yaml")


def _copy(source: Path, dest: Path) -> Path:
    for name in COPIED:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, dest / name)
    return dest


@pytest.fixture(scope="session")
def clean_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with a fresh OpenAPI snapshot (the committed one
    may lag behind an API change in progress; test_the_repository_* checks it)."""
    tree = _copy(ROOT, tmp_path_factory.mktemp("governance-clean"))
    write_snapshot(Context(Tree(tree)))
    return tree


@pytest.fixture
def tree(clean_tree: Path, tmp_path: Path) -> Path:
    """A copy of the clean tree for this test to break."""
    return _copy(clean_tree, tmp_path / "tree")


def _overlay(tree: Path, name: str) -> Path:
    source = FIXTURES / name
    assert source.is_dir(), f"no fixture {name}"
    shutil.copytree(source, tree, dirs_exist_ok=True)
    return tree


def _found(tree: Path, rules: list[str]) -> list[str]:
    return [str(v) for v in check(tree, rules=rules, use_database=False).violations]


def _only(found: list[str], rule: str, *needles: str) -> None:
    assert found, f"{rule} found nothing"
    assert all(line.startswith(f"[{rule}]") for line in found), found
    for needle in needles:
        assert any(needle in line for line in found), f"{needle!r} not in {found}"


# ---- the clean tree ----------------------------------------------------------------------


def test_the_clean_copy_keeps_every_rule_that_needs_no_database(clean_tree):
    report = check(clean_tree, use_database=False)
    assert [str(v) for v in report.violations] == []
    assert report.skipped == ["schema.code", "schema.migrations"]
    assert set(report.checked) == {r.name for r in RULES} - {"schema.code", "schema.migrations"}


def test_every_rule_has_a_summary_and_groups_select_their_rules():
    assert all(r.summary for r in RULES)
    assert [r.name for r in select(["forbidden"])] == [
        "forbidden.websocket",
        "forbidden.streaming",
        "forbidden.gpu",
        "forbidden.dag",
        "forbidden.frame-progress",
    ]
    assert [r.name for r in select(["schema.code", "schema"])] == [
        "schema.code",
        "schema.migrations",
        "schema.openapi",
    ]
    with pytest.raises(ValueError, match="no rule"):
        select(["forbid"])


# ---- forbidden concepts -------------------------------------------------------------------


def test_a_websocket_route_is_forbidden(tree):
    found = _found(_overlay(tree, "websocket"), ["forbidden"])
    _only(found, "forbidden.websocket", "services/api/live.py:3", "`WebSocket`", "`websocket`")


def test_a_server_sent_events_endpoint_is_forbidden(tree):
    found = _found(_overlay(tree, "sse"), ["forbidden"])
    _only(found, "forbidden.streaming", "services/api/follow.py:17", "text/event-stream")


def test_streaming_a_finished_document_is_not_real_time_streaming(clean_tree):
    routes = (clean_tree / "services" / "api" / "routes.py").read_text()
    assert "StreamingResponse" in routes  # the results download
    assert _found(clean_tree, ["forbidden.streaming"]) == []


def test_gpu_device_selection_is_forbidden(tree):
    found = _found(_overlay(tree, "gpu"), ["forbidden"])
    _only(found, "forbidden.gpu", "fast_faces.py:7", "getCudaEnabledDeviceCount", "'cuda:0'")


def test_a_gpu_requested_in_the_deployment_is_forbidden(tree):
    found = _found(_overlay(tree, "gpu_deploy"), ["forbidden"])
    _only(found, "forbidden.gpu", "deploy/k8s/overlays/gpu/worker-gpu.yaml:3", "nvidia.com")


def test_a_dag_of_pipelines_is_forbidden(tree):
    found = _found(_overlay(tree, "dag"), ["forbidden"])
    _only(found, "forbidden.dag", "graph.py:3", "`graphlib`", "`TopologicalSorter`", "PIPELINE_DAG")


def test_an_analyzer_that_runs_another_pipeline_is_forbidden(tree):
    found = _found(_overlay(tree, "nested_pipeline"), ["forbidden"])
    _only(found, "forbidden.dag", "analyzers/chained.py:6", "`load_registry`")


def test_progress_reported_for_every_frame_is_forbidden(tree):
    found = _found(_overlay(tree, "frame_progress"), ["forbidden"])
    _only(found, "forbidden.frame-progress", "shared/pipeline/per_frame.py:10", "`on_progress")


def test_progress_written_outside_the_heartbeat_loop_is_forbidden(tree):
    found = _found(_overlay(tree, "worker_progress"), ["forbidden"])
    _only(found, "forbidden.frame-progress", "services/worker/eager.py:7", "`_heartbeat`")


def test_the_pipeline_s_throttle_is_what_keeps_the_rule(tree):
    """Take the clock condition out of the real pipeline: the rule fires there."""
    path = tree / "shared" / "pipeline" / "service.py"
    module = ast.parse(path.read_text())
    guards = [
        node
        for node in ast.walk(module)
        if isinstance(node, ast.If)
        and any(
            isinstance(c, ast.Call) and getattr(c.func, "id", "") == "on_progress"
            for c in ast.walk(node)
        )
        and "report_at" in ast.unparse(node.test)
    ]
    assert guards, "the pipeline no longer throttles progress against report_at"
    guards[0].test = ast.Constant(True)
    path.write_text(ast.unparse(module))
    found = _found(tree, ["forbidden.frame-progress"])
    _only(found, "forbidden.frame-progress", "shared/pipeline/service.py")


def test_the_worker_s_heartbeat_must_be_a_sleeping_loop(tree):
    path = tree / "services" / "worker" / "worker.py"
    text = path.read_text()
    assert "await asyncio.sleep(interval)" in text
    path.write_text(text.replace("await asyncio.sleep(interval)", "pass", 1))
    found = _found(tree, ["forbidden.frame-progress"])
    _only(found, "forbidden.frame-progress", "services/worker/worker.py", "heartbeat")


# ---- the payload ----------------------------------------------------------------------------


def test_a_second_payload_builder_is_forbidden(tree):
    found = _found(_overlay(tree, "payload_builder"), ["payload.builder"])
    _only(found, "payload.builder", "services/janitor/nudge.py:8", "is published")


def test_a_publish_job_without_build_payload_is_forbidden(tree):
    found = _found(_overlay(tree, "publish_job"), ["payload.builder"])
    _only(found, "payload.builder", "QuickBroker.publish_job", "encodes a job message body")


def test_job_ids_in_logs_and_http_answers_are_not_payloads(clean_tree):
    worker = (clean_tree / "services" / "worker" / "worker.py").read_text()
    assert 'extra={"job_id": str(job_id)}' in worker  # a log record of exactly one key
    assert _found(clean_tree, ["payload.builder"]) == []


def test_a_payload_that_differs_between_calls_is_not_deterministic(tree):
    found = _found(_overlay(tree, "payload_nondeterministic"), ["payload.deterministic"])
    _only(found, "payload.deterministic", "differs between calls")


# ---- state transitions -------------------------------------------------------------------------


def test_the_doc_table_matches_the_code_row_for_row(clean_tree):
    code, problems = code_transitions(Tree(clean_tree))
    assert problems == []
    rows = doc_table((clean_tree / "docs" / "architecture.md").read_text())
    assert rows is not None
    assert {r.name: (r.source, r.target, r.lease) for r in rows} == {
        name: (source, target, lease) for name, (source, target, lease, _) in code.items()
    }


def test_a_changed_row_in_the_doc_table_is_caught(tree):
    doc = tree / "docs" / "architecture.md"
    text = doc.read_text()
    row = "| `cancel` | `pending` | `failed` |"
    assert row in text
    doc.write_text(text.replace(row, "| `cancel` | `running` | `failed` |"))
    found = _found(tree, ["transitions"])
    _only(found, "transitions.table", "`cancel` goes pending -> failed", "docs/architecture.md:")


def test_a_transition_added_to_the_code_only_is_caught(tree):
    jobs = tree / "shared" / "jobs.py"
    text = jobs.read_text()
    anchor = '    CLAIM = ("claim", JobStatus.PENDING, JobStatus.RUNNING, False)\n'
    assert anchor in text
    jobs.write_text(
        text.replace(
            anchor, anchor + '    PAUSE = ("pause", JobStatus.RUNNING, JobStatus.PENDING, True)\n'
        )
    )
    found = _found(tree, ["transitions.table"])
    _only(found, "transitions.table", "`pause` (running -> pending) is not in the table")
    assert any("state diagram lacks `pause`" in line for line in found)


def test_a_state_diagram_edge_drawn_wrong_is_caught(tree):
    doc = tree / "docs" / "architecture.md"
    text = doc.read_text()
    doc.write_text(
        text.replace("    failed --> pending : replay", "    completed --> pending : replay")
    )
    found = _found(tree, ["transitions.table"])
    _only(found, "transitions.table", "draws `replay` as completed -> pending")


def test_a_status_written_outside_the_transition_method_is_caught(tree):
    found = _found(_overlay(tree, "status_writer"), ["transitions"])
    _only(found, "transitions.writers", "services/janitor/unstick.py:8", "UPDATE jobs SET status")


def test_the_repository_s_own_guarded_update_is_the_one_allowed_writer(clean_tree):
    repository = (clean_tree / "shared" / "repository" / "postgres.py").read_text()
    assert '"status = $target"' in repository
    assert _found(clean_tree, ["transitions.writers"]) == []


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("UPDATE jobs SET status = 'failed' WHERE job_id = $1", True),
        ("update  jobs\n set progress = 0,\n  status='failed'", True),
        ('UPDATE "jobs" SET "status" = $2', True),
        ("INSERT INTO jobs (job_id, status) VALUES ($1, 'running')", True),
        ("status = $target", True),
        ("UPDATE jobs SET published_at = now() WHERE job_id = $1 AND status = 'pending'", False),
        ("SELECT * FROM jobs WHERE status = 'running'", False),
        ("INSERT INTO job_events (job_id, status) SELECT job_id, status FROM t", False),
        ("UPDATE job_events SET status = 'x'", False),
        ("status >= 1", False),
    ],
)
def test_what_counts_as_writing_a_status(sql, writes):
    assert bool(status_writes(sql)) is writes


# ---- the migrations, read without a database -------------------------------------------------


def test_the_migrations_are_read_past_comments_quotes_and_dollar_quotes():
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE t (a int, b text DEFAULT 'x;y'); /* block; */\n"
        "DO $$ BEGIN EXECUTE 'x;y'; END $$;\n"
        "ALTER TABLE t ADD COLUMN c varchar(10) NOT NULL, DROP COLUMN a;\n"
    )
    found = statements(sql)
    assert [line for _, line in found] == [2, 3, 4]
    declared = declared_schema([("m.sql", sql)])
    columns = declared.tables["t"]
    assert list(columns) == ["b", "c"]
    assert (columns["b"].type, columns["b"].nullable) == ("text", True)
    assert (columns["c"].type, columns["c"].nullable, columns["c"].where) == (
        "varchar",
        False,
        "m.sql:4",
    )


@pytest.mark.parametrize(
    ("declared", "udt"),
    [
        ("integer", "int4"),
        ("bigserial", "int8"),
        ("double precision", "float8"),
        ("timestamp with time zone", "timestamptz"),
        ("character varying(64)", "varchar"),
        ("numeric(10, 2)", "numeric"),
        ("text[]", "_text"),
        ("job_status", "job_status"),
    ],
)
def test_declared_types_are_spelled_as_information_schema_spells_them(declared, udt):
    column = declared_schema([("m.sql", f"CREATE TABLE t (c {declared})")]).tables["t"]["c"]
    assert column.type == udt


# ---- the OpenAPI snapshot and the topology (the code imported in a child process) ---------------


def test_an_edited_openapi_snapshot_is_caught(tree):
    path = tree / SNAPSHOT
    document = json.loads(path.read_text())
    document["paths"]["/video/status/{job_id}"]["get"]["summary"] = "Edited by hand"
    del document["paths"]["/healthz"]
    path.write_text(json.dumps(document))
    found = _found(tree, ["schema.openapi"])
    _only(
        found,
        "schema.openapi",
        "/paths/~1healthz: added in the code",
        "/paths/~1video~1status~1{job_id}/get/summary",
        "--write-openapi",
    )


def test_openapi_differences_name_the_path_that_changed():
    old = {"a": {"b": [1, {"c": "x"}]}, "gone": 1}
    new = {"a": {"b": [1, {"c": "y"}]}, "new/key": 2}
    assert differences(old, new) == [
        '/a/b/1/c: "x" in the snapshot, "y" in the code',
        "/gone: gone from the code",
        "/new~1key: added in the code",
    ]


def test_a_queue_the_docs_do_not_name_is_caught(tree):
    doc = tree / "docs" / "architecture.md"
    doc.write_text(doc.read_text().replace("videoq.dead.jobs", "the parking lot"))
    found = _found(tree, ["topology"])
    _only(found, "topology.docs", "`videoq.dead.jobs`")


# ---- the command ---------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.governance", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_prints_each_violation_and_exits_1(tree):
    _overlay(tree, "websocket")
    _overlay(tree, "status_writer")
    result = _cli("--root", str(tree), "--rule", "forbidden", "--rule", "transitions")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("[forbidden.websocket] services/api/live.py:3:") for line in lines)
    assert any(
        line.startswith("[transitions.writers] services/janitor/unstick.py:8:") for line in lines
    )
    assert lines[-1].startswith("governance: ")
    assert "forbidden.websocket, transitions.writers" in lines[-1]


def test_the_command_exits_0_on_the_clean_tree(clean_tree):
    result = _cli("--root", str(clean_tree), "--no-database")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("governance: 12 rules kept")
    assert "skipped schema.code, schema.migrations" in result.stdout


def test_write_openapi_refreshes_the_snapshot(tree):
    (tree / SNAPSHOT).write_text("{}\n")
    assert _found(tree, ["schema.openapi"])
    result = _cli("--root", str(tree), "--write-openapi")
    assert result.returncode == 0, result.stderr
    assert _found(tree, ["schema.openapi"]) == []
    assert (tree / SNAPSHOT).read_text().endswith("}\n")


def test_the_command_lists_rules_and_refuses_unknown_ones():
    listed = _cli("--list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [r.name for r in RULES]
    unknown = _cli("--rule", "nonsense")
    assert unknown.returncode == 2
    assert "no rule 'nonsense'" in unknown.stderr


def test_without_a_database_the_live_schema_rule_says_what_it_needs(clean_tree, monkeypatch):
    monkeypatch.delenv("VIDEOQ_TEST_DATABASE_URL", raising=False)
    report = check(clean_tree, rules=["schema.migrations"])
    assert [v.message for v in report.violations] == [
        "needs PostgreSQL: pass --database-url or set VIDEOQ_TEST_DATABASE_URL"
        " (or skip this check with --no-database)"
    ]
