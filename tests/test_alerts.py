"""The Prometheus rules, their unit tests, the example config and the Grafana dashboard.

- promtool checks the rule file and the config and runs the rules' unit tests
  (deploy/prometheus/alerts_test.yml), which must fire each alert once and not another;
- the Kubernetes PrometheusRule is generated from deploy/prometheus/alerts.yml
  (deploy/k8s/render_rules.py): the checked-in file is a fresh render, and embeds exactly
  the rules' groups;
- every metric name in the rules and in the dashboard is one the code exports (counters
  with prometheus-client's `_total`, histograms with `_bucket`/`_sum`/`_count`), with
  labels it has.

promtool comes from scripts/install-prometheus.sh. Without it these tests are skipped on a
developer's machine, and fail in CI (CI set).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RUNBOOK = PROMETHEUS_DIR / "runbook.md"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
RENDER_RULES = ROOT / "deploy" / "k8s" / "render_rules.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "naive-dashboard.json"

# Served by collectors that read the database and the broker (the API's metrics port,
# cached a few seconds), with their labels; and Prometheus' own `up` of every target.
COLLECTED = {
    "naive_jobs_in_flight": {"state"},
    "naive_oldest_in_flight_job_age_seconds": set(),
    "naive_broker_queue_depth": {"queue"},
    "naive_media_free_bytes": set(),
    "naive_webhook_oldest_undelivered_event_age_seconds": set(),
    "naive_jobs_waiting": {"account", "reason"},
    "naive_provider_slots_in_use": {"provider"},
    "naive_provider_capacity": set(),
    "up": set(),
}
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"critical", "warning"}
DASHBOARD_ROWS = [
    "Job pipeline",
    "Provider",
    "Credits",
    "API",
    "Workers",
    "Webhooks",
    "Fair share and spend",
]

# Words of PromQL that are not metric names.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
}


def require(tool: str) -> str:
    """The tool's path; skipped without it on a developer's machine, failed in CI."""
    path = shutil.which(tool)
    if path:
        return path
    message = f"{tool} is not installed: run `bash scripts/install-prometheus.sh`"
    if os.environ.get("CI") is None:
        pytest.skip(message)
    pytest.fail(f"{message} (CI is set: the check must run)")


@pytest.fixture(scope="module")
def promtool() -> str:
    return require("promtool")


def run(command: list[str], cwd: Path = ROOT) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[dict[str, Any]]:
    for group in load_yaml(ALERTS)["groups"]:
        yield from group["rules"]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> dict[str, str]:
    """Every query of the dashboard, keyed by panel title and refId."""
    exprs = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            exprs[f"{panel['title']} ({target['refId']})"] = target["expr"]
    return exprs


# --- what the code exports ---------------------------------------------------------------

SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def exported() -> dict[str, set[str]]:
    """Every series name the code exports, with its label names."""
    labels_of = {
        wrapper._name: set(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    names: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            labels = labels_of.get(family.name, set())
            if suffix == "_bucket":
                labels = labels | {"le"}
            names[family.name + suffix] = labels | TARGET_LABELS
    for name, labels in COLLECTED.items():
        names[name] = labels | TARGET_LABELS
    return names


def test_the_exported_names_are_found() -> None:
    names = exported()
    assert {
        "naive_jobs_submitted_total",
        "naive_jobs_finished_total",
        "naive_http_request_duration_seconds_bucket",
        "naive_provider_calls_total",
        "naive_jobs_in_flight",
    } <= set(names)
    assert names["naive_jobs_finished_total"] == {"model", "status", "job", "instance"}
    assert "le" in names["naive_job_polls_bucket"]
    assert "naive_jobs_finished" not in names  # a counter is only ever `_total`


# --- reading PromQL -----------------------------------------------------------------------

STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*(?:{STRING})")
LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: not functions, keywords or label names."""
    text = re.sub(STRING, '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = LABEL_LISTS.sub(" ", text)  # by (...), on (...), group_left (...)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    return {name for name in IDENTIFIER.findall(text) if name.lower() not in KEYWORDS}


def selector_labels(expr: str) -> dict[str, set[str]]:
    """The label names each metric is filtered on, e.g. {'up': {'job'}}."""
    found: dict[str, set[str]] = {}
    for name, matchers in SELECTOR.findall(expr):
        found.setdefault(name, set()).update(MATCHER.findall(matchers))
    return found


def test_the_promql_reader_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(naive_job_polls_bucket{model=~"a|b"}'
        "[$__rate_interval]))) / on () group_left sum without (instance) (up offset 5m) "
        'and absent(naive:x:ratio{le="0.5"} == 1) or vector(1) > bool 2e3'
    )
    assert metric_names(expr) == {"naive_job_polls_bucket", "up", "naive:x:ratio"}
    assert selector_labels(expr) == {"naive_job_polls_bucket": {"model"}, "naive:x:ratio": {"le"}}


def check_names(where: str, expr: str, allowed_extra: frozenset[str] = frozenset()) -> list[str]:
    names = exported()
    problems = []
    for name in metric_names(expr):
        if name not in names and name not in allowed_extra:
            problems.append(f"{where}: {name} is not exported by the code")
    for name, labels in selector_labels(expr).items():
        unknown = labels - names.get(name, labels)
        if unknown:
            problems.append(f"{where}: {name} has no label {sorted(unknown)}")
    return problems


def test_every_metric_in_the_rules_is_exported() -> None:
    problems = []
    used = set()
    for rule in rules():
        where = rule.get("alert") or rule["record"]
        problems += check_names(where, rule["expr"], allowed_extra=frozenset(recorded()))
        used |= metric_names(rule["expr"])
    assert problems == []
    assert recorded() <= used | {"naive:jobs_in_flight:max"}  # recordings are used


def test_every_metric_in_the_dashboard_is_exported() -> None:
    problems = []
    for where, expr in dashboard_exprs().items():
        assert metric_names(expr), where
        problems += check_names(where, expr)  # raw metrics only: no recording rules
    assert problems == []


# --- promtool -----------------------------------------------------------------------------


def test_the_rules_pass_promtool_check(promtool: str) -> None:
    output = run([promtool, "check", "rules", str(ALERTS)])
    assert f"SUCCESS: {len(list(rules()))} rules found" in output


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    output = run([promtool, "test", "rules", ALERTS_TEST.name], cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in output


def test_the_example_config_passes_promtool_check(promtool: str) -> None:
    run([promtool, "check", "config", str(CONFIG)])
    config = load_yaml(CONFIG)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["naive-api", "naive-worker"]
    # Each on its metrics port (API_METRICS_PORT, WORKER_METRICS_PORT), never the API's PORT.
    ports = {
        job["job_name"]: {
            target.rsplit(":", 1)[1] for target in job["static_configs"][0]["targets"]
        }
        for job in config["scrape_configs"]
    }
    assert ports == {"naive-api": {"9101"}, "naive-worker": {"9100"}}
    assert config["rule_files"] == ["alerts.yml"]


def test_each_alert_is_unit_tested_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in load_yaml(ALERTS_TEST)["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(alerts()) - fired == set(), "alerts never fired by alerts_test.yml"
    assert set(alerts()) - quiet == set(), "alerts never shown quiet by alerts_test.yml"


# --- the rules' shape ---------------------------------------------------------------------


def test_every_alert_has_a_severity_a_for_and_a_runbook() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for name, rule in alerts().items():
        assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "deploy/prometheus/runbook.md", name
        assert anchor in headings, f"{name}: no section #{anchor} in runbook.md"


def test_the_required_alerts_watch_what_they_should() -> None:
    rules_by_name = alerts()
    expected = {
        "NaiveJobFailureRateHigh": "naive:job_failures:ratio_rate15m > 0.10",
        "NaiveProviderErrorRateHigh": "naive:provider_call_errors:ratio_rate15m > 0.10",
        "NaiveJobStuckPastDeadline": "max(naive_oldest_in_flight_job_age_seconds) > 1800",
        "NaiveQueueBacklogGrowing": "deriv(naive_broker_queue_depth[15m])",
        "NaiveNoWorkerUp": 'absent(up{job="naive-worker"} == 1)',
        "NaiveNoApiUp": 'absent(up{job="naive-api"} == 1)',
        "NaiveIngestFailed": 'increase(naive_ingest_failures_total{final="true"}[15m])',
        "NaiveMediaDiskAlmostFull": 'min(naive_media_free_bytes{job="naive-api"})',
        "NaiveApiErrorRateHigh": "naive:http_5xx:ratio_rate5m > 0.05",
        "NaiveApiLatencyBudgetBurnFast": "naive:http_request_slow:ratio_rate5m > (14.4 * 0.01)",
        "NaiveApiLatencyBudgetBurnSlow": "naive:http_request_slow:ratio_rate30m > (6 * 0.01)",
        "NaiveWebhookBacklogGrowing": (
            "max(naive_webhook_oldest_undelivered_event_age_seconds) > 600"
        ),
    }
    assert set(rules_by_name) == set(expected)
    for name, fragment in expected.items():
        assert fragment in rules_by_name[name]["expr"], name
    assert rules_by_name["NaiveNoWorkerUp"]["for"] == "5m"
    # Every API replica exports the same database-wide gauges: never summed.
    for rule in rules():
        for gauge in COLLECTED:
            if gauge != "up":
                assert not re.search(rf"sum\b[^()]*\([^()]*\b{gauge}\b", rule["expr"]), rule


# --- the Kubernetes PrometheusRule ----------------------------------------------------


def render_rules() -> Any:
    """deploy/k8s/render_rules.py, a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("render_rules", RENDER_RULES)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    assert PROMETHEUS_RULE.read_text() == render_rules().render(), (
        "deploy/k8s/base/prometheusrule.yaml is out of date: "
        "run `python deploy/k8s/render_rules.py`"
    )


def test_the_prometheus_rule_embeds_exactly_the_alerts_groups() -> None:
    """Guards the generator: the manifest's groups are the rule file's, as parsed."""
    prometheus_rule = yaml.safe_load(render_rules().render())
    assert prometheus_rule["kind"] == "PrometheusRule"
    assert prometheus_rule["metadata"]["name"] == "naive-alerts"
    assert prometheus_rule["spec"]["groups"] == load_yaml(ALERTS)["groups"]


def test_the_rule_generator_refuses_a_file_without_one_groups_section() -> None:
    with pytest.raises(ValueError, match="one top-level `groups:`"):
        render_rules().render("rules:\n  - record: x\n")


# --- the dashboard ------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_with_the_rows_and_a_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] == 41  # what grafana-foundation-sdk for Grafana 11.6 writes
    assert board["uid"] and board["title"]
    (variable,) = board["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    panels = board["panels"]
    assert [p["title"] for p in panels if p["type"] == "row"] == DASHBOARD_ROWS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            assert panel["panels"] == [] and not panel["collapsed"], panel["title"]
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    # Panels do not overlap.
    cells = set()
    for panel in panels:
        p = panel["gridPos"]
        columns, lines = range(p["x"], p["x"] + p["w"]), range(p["y"], p["y"] + p["h"])
        mine = {(x, y) for x in columns for y in lines}
        assert not cells & mine, panel["title"]
        cells |= mine


def test_the_dashboard_shows_what_each_row_is_about() -> None:
    rows: dict[str, set[str]] = {}
    current = ""
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            continue
        for target in panel["targets"]:
            rows.setdefault(current, set()).update(metric_names(target["expr"]))
    assert {
        "naive_jobs_submitted_total",
        "naive_jobs_finished_total",
        "naive_jobs_in_flight",
        "naive_oldest_in_flight_job_age_seconds",
        "naive_job_submit_to_completed_seconds_bucket",
        "naive_job_queue_wait_seconds_bucket",
        "naive_job_provider_seconds_bucket",
        "naive_job_settle_to_ingest_seconds_bucket",
    } <= rows["Job pipeline"]
    assert {"naive_provider_calls_total", "naive_job_polls_bucket"} <= rows["Provider"]
    assert rows["Credits"] == {"naive_credits_total"}
    assert {
        "naive_http_requests_total",
        "naive_http_request_duration_seconds_bucket",
    } <= rows["API"]
    assert {"up", "naive_broker_queue_depth", "naive_ingest_failures_total"} <= rows["Workers"]
    assert rows["Webhooks"] == {
        "naive_webhook_deliveries_total",
        "naive_webhook_delivery_lag_seconds_bucket",
        "naive_webhook_oldest_undelivered_event_age_seconds",
    }
    assert rows["Fair share and spend"] == {
        "naive_jobs_waiting",
        "naive_provider_slots_in_use",
        "naive_provider_capacity",
        "naive_budget_refusals_total",
    }
    # Gauges every API replica exports alike are never summed on the dashboard either.
    for expr in dashboard_exprs().values():
        for gauge in COLLECTED.keys() - {"up"}:
            assert not re.search(rf"sum\b[^()]*\([^()]*\b{gauge}\b", expr), expr
