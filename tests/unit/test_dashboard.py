"""The Grafana dashboard and the runbook's alert rules use only what videoq exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import Metrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "videoq-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

#: Series the runbook may use besides videoq's: RabbitMQ's own (the
#: rabbitmq_prometheus plugin's per-object endpoint) and Prometheus' ``up``.
EXTERNAL = {
    "rabbitmq_queue_messages",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
    "up",
}
#: Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"instance", "job"}

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_NUMBER = re.compile(r"(?<![\w:])\d[\w.+-]*")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "group_left", "group_right", "inf", "nan"}


def exported() -> dict[str, set[str]]:
    """Every series name ``Metrics().render()`` exports, with its label names.

    Each labelled metric gets one child first, so that its samples (and so
    its labels) appear in the rendered text.
    """
    metrics = Metrics()
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, MetricWrapperBase) and wrapper._labelnames:
            wrapper.labels(*("x" for _ in wrapper._labelnames))
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def analyse(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metric names ``expr`` selects (each with the label names it matches
    on) and the label names it groups by."""
    text = _VARIABLE.sub("", _STRING.sub('""', expr))
    selected: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels = set(_MATCHER.findall(matchers))
        if name:
            selected.setdefault(name, set()).update(labels)
        else:
            raise AssertionError(f"selector without a metric name in {expr!r}")
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _RANGE.sub(" ", text)
    grouping: set[str] = set()
    for labels in _GROUPING.findall(text):
        grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for name, call in _IDENTIFIER.findall(text):
        if not call and name.lower() not in _KEYWORDS:
            selected.setdefault(name, set())
    return selected, grouping


def check(expr: str, series: dict[str, set[str]], *, allowed: set[str] = frozenset()) -> None:
    selected, grouping = analyse(expr)
    assert selected, f"no metric in {expr!r}"
    for name, labels in selected.items():
        if name in allowed:
            continue
        assert name in series, f"{name} is not exported by Metrics() (in {expr!r})"
        unknown = labels - series[name] - TARGET_LABELS
        assert not unknown, f"{name} has no label {unknown} (in {expr!r})"
    available = set().union(*(series.get(n, set()) for n in selected)) | TARGET_LABELS
    if not set(selected) & allowed:
        assert grouping <= available, f"grouping by {grouping - available} in {expr!r}"


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in inner.get("targets", []) if "expr" in t]
    return exprs


def runbook_exprs() -> list[str]:
    """``expr`` of every rule in the runbook's YAML blocks, and every ``promql`` block."""
    text = RUNBOOK.read_text()
    exprs = []
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        document = yaml.safe_load(block)
        for group in (document or {}).get("groups", []):
            exprs += [rule["expr"] for rule in group["rules"]]
    exprs += [b.strip() for b in re.findall(r"```promql\n(.*?)```", text, re.DOTALL)]
    return exprs


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    return exported()


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_parser_finds_names_labels_and_groupings_and_skips_functions_and_variables():
    selected, grouping = analyse(
        'histogram_quantile(0.99, sum by (le, route) (rate(videoq_http_request_duration_seconds_bucket{status=~"5..",route!="$x"}[$__rate_interval])))'
        " / on (instance) group_left sum(up offset 1h) or vector(0)"
    )
    assert selected == {
        "videoq_http_request_duration_seconds_bucket": {"status", "route"},
        "up": set(),
    }
    assert grouping == {"le", "route", "instance"}


def test_the_dashboard_is_valid_json_with_unique_panels_on_the_grid(dashboard):
    assert dashboard["uid"] == "videoq-overview" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "pipeline"} <= variables


def test_every_dashboard_expression_uses_only_exported_metrics_and_labels(dashboard, series):
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 20
    for expr in exprs:
        check(expr, series)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            name, label = re.fullmatch(
                r"label_values\((\w+),\s*(\w+)\)", variable["definition"]
            ).groups()
            assert label in series[name], variable["definition"]


def test_the_dashboard_shows_every_videoq_metric(dashboard, series):
    used = set().union(*(analyse(e)[0] for e in dashboard_exprs(dashboard)))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    exported_families = {
        re.sub(r"_(bucket|sum|count)$", "", n) for n in series if not n.endswith("_created")
    }
    assert exported_families - families == set()


def test_the_runbooks_alert_rules_use_exported_metrics_or_rabbitmqs_own(series):
    exprs = runbook_exprs()
    assert len(exprs) >= 8
    for expr in exprs:
        check(expr, series, allowed=EXTERNAL)
    assert any("videoq_" in e for e in exprs) and any("rabbitmq_" in e for e in exprs)


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(videoq_jobs_done_total[5m]))",  # no such metric
        "sum(rate(videoq_jobs_completed[5m]))",  # counters end in _total
        'sum(rate(videoq_jobs_completed_total{tier="10s"}[5m]))',  # no such label
        "sum by (route) (rate(videoq_jobs_completed_total[5m]))",  # nor to group by
        "histogram_quantile(0.9, sum by (le) (rate(videoq_job_duration_seconds[5m])))",
    ],
)
def test_the_check_refuses_names_and_labels_that_are_not_exported(expr, series):
    with pytest.raises(AssertionError):
        check(expr, series)
