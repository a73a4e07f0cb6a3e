"""A real Prometheus scrapes the API and a worker while jobs run, and evaluates the rules.

The test starts Prometheus (on a free port, scrape and rule interval 1 s, its own config and
data folder), the API under gunicorn (scraped on its metrics port, API_METRICS_PORT) and an
extra Celery worker serving its metrics, both in prometheus-client's multiprocess mode
(`WORKER_METRICS_PORT`, `PROMETHEUS_MULTIPROC_DIR`),
submits jobs through the HTTP API, and asks Prometheus' HTTP API until what it scraped
matches what the test did. Then every rule of deploy/prometheus/alerts.yml (loaded into
this Prometheus) and every query of the Grafana dashboard must evaluate without an error.

The API and this worker use a queue of their own (`CELERY_QUEUE`), so that this worker, not
the session's (which serves no metrics), runs every job the test submits: the finished
counts it exports are then exactly the test's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tests.helpers import KLING_T2V, HttpApi, generate, wait_for_job
from tests.stack import free_port, running_api, running_worker, started, worker_with_metrics
from tests.test_alerts import ALERTS, dashboard_exprs, require, rules
from tests.waiting import wait_for

SCRAPE_INTERVAL = "1s"
# Grafana's variables, as Grafana would expand them for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}
# Panels that must show data once the jobs ran (the others may be empty: no ingest failure,
# no webhook, no 5xx).
PANELS_WITH_DATA = [
    "Jobs submitted (A)",
    "Jobs finished (A)",
    "Jobs in flight by state (A)",
    "Oldest in-flight job age (A)",
    "Submit → completed (A)",
    "Queue wait (A)",
    "Provider time (A)",
    "Settle → ingest (A)",
    "Provider calls (A)",
    "Polls per job (C)",
    "Credits moved (A)",
    "Captured (24 h) (A)",
    "Held (24 h) (A)",
    "Released (24 h) (A)",
    "Requests by route and status (A)",
    "Latency p99 by route (A)",
    "Workers up (A)",
    "API replicas up (A)",
    "Broker queue depth (A)",
]
COMPLETING = 4
FAILING = 1


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of `expr` now; fails on a query error."""
        body = self.http.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", (expr, body)
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def values(self, expr: str, label: str | None = None) -> dict[str, float]:
        return {
            (sample["metric"].get(label, "") if label else ""): float(sample["value"][1])
            for sample in self.query(expr)
        }

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        return wait_for(condition, timeout=timeout, interval=0.25, message=what)


@contextmanager
def running_prometheus(
    binary: str, tmp_path: Path, targets: dict[str, str]
) -> Iterator[Prometheus]:
    """Prometheus on a free port scraping `targets` ({job: host:port}), with our rules."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": SCRAPE_INTERVAL,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "evaluation_interval": SCRAPE_INTERVAL,
                },
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [target]}]}
                    for job, target in targets.items()
                ],
            }
        )
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    prometheus = Prometheus(f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        try:
            return prometheus.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    try:
        with started(argv, log, ready=ready, timeout=30):
            yield prometheus
    finally:
        prometheus.http.close()


def test_prometheus_scrapes_the_api_and_a_worker_while_jobs_run(make_account, test_env, tmp_path):
    binary = require("prometheus")
    queue = f"{test_env['CELERY_QUEUE']}-scrape"  # this test's API and worker only
    api_env = {
        **test_env,
        "CELERY_QUEUE": queue,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "api-metrics"),
    }
    worker_env, worker_port = worker_with_metrics(
        {**test_env, "CELERY_QUEUE": queue}, tmp_path / "worker-metrics"
    )
    account = make_account()

    with (
        running_api(api_env, tmp_path / "api.log") as api,
        running_worker(worker_env, tmp_path / "worker.log"),
        running_prometheus(
            binary,
            tmp_path,
            {
                "naive-api": urlsplit(api.metrics_url).netloc,
                "naive-worker": f"127.0.0.1:{worker_port}",
            },
        ) as prometheus,
        httpx.Client(base_url=api.url, timeout=10) as http,
    ):
        # Both targets scraped, and the no-API/no-worker alerts see them (job labels match).
        prometheus.wait(
            lambda: (
                prometheus.values('up{job=~"naive-api|naive-worker"} == 1', "job").keys()
                == {"naive-api", "naive-worker"}
            ),
            "both targets up",
        )

        # A new API, a fresh multiprocess folder: its counts are this test's submits.
        client = HttpApi(http)
        job_ids = [
            generate(client, account, f"scrape {n} [sim latency=1]")["job_id"]
            for n in range(COMPLETING)
        ]
        job_ids += [
            generate(client, account, f"scrape fail {n} [sim latency=1] [sim fail='x']")["job_id"]
            for n in range(FAILING)
        ]
        statuses = [wait_for_job(client, account, job_id)["status"] for job_id in job_ids]
        assert statuses == ["completed"] * COMPLETING + ["failed"] * FAILING

        submitted = COMPLETING + FAILING
        prometheus.wait(
            lambda: (
                prometheus.values(
                    f'naive_jobs_submitted_total{{job="naive-api",model="{KLING_T2V}"}}'
                )
                == {"": submitted}
            ),
            f"naive_jobs_submitted_total == {submitted}",
        )
        # A new worker process, a fresh multiprocess folder: its counts are this test's jobs.
        prometheus.wait(
            lambda: (
                prometheus.values(
                    'sum by (status) (naive_jobs_finished_total{job="naive-worker"})', "status"
                )
                == {"completed": COMPLETING, "failed": FAILING}
            ),
            "finished counts of the worker",
        )
        calls = prometheus.values(
            'sum by (operation) (naive_provider_calls_total{job="naive-worker"}) > 0', "operation"
        )
        assert {"submit", "status", "result"} <= calls.keys(), calls
        assert calls["submit"] == COMPLETING + FAILING
        # The label values the rules and the dashboard filter on are the ones exported.
        outcomes = prometheus.values("sum by (outcome) (naive_provider_calls_total)", "outcome")
        assert "ok" in outcomes, outcomes
        kinds = prometheus.values("sum by (kind) (naive_credits_total)", "kind")
        assert {"held", "captured", "released"} <= kinds.keys(), kinds
        assert prometheus.query('naive_http_request_duration_seconds_bucket{le="0.5"}')
        assert prometheus.query(
            'naive_http_requests_total{route="/v1/video/generate",method="POST",status="202"}'
        )
        assert prometheus.values('up{job="naive-worker"} == 1') == {"": 1.0}
        in_flight = prometheus.values(
            'max by (state) (naive_jobs_in_flight{job="naive-api"})', "state"
        )
        assert in_flight.keys() == {"queued", "submitted", "running", "settling", "ingesting"}
        assert prometheus.query(f'naive_broker_queue_depth{{job="naive-api",queue="{queue}"}}')

        # Every rule of alerts.yml is loaded, evaluated, and healthy.
        expected_rules = {rule.get("alert") or rule["record"] for rule in rules()}

        def healthy_rules() -> bool:
            groups = prometheus.http.get("/api/v1/rules").json()["data"]["groups"]
            loaded = [rule for group in groups for rule in group["rules"]]
            errors = [(r["name"], r.get("lastError")) for r in loaded if r["health"] == "err"]
            assert errors == [], errors
            return {r["name"] for r in loaded if r["health"] == "ok"} == expected_rules

        prometheus.wait(healthy_rules, "every rule evaluated")
        # The targets are up, so the no-API/no-worker alerts (pending at the first
        # evaluation, before any scrape) resolve.
        prometheus.wait(
            lambda: (
                not {
                    alert["labels"]["alertname"]
                    for alert in prometheus.http.get("/api/v1/alerts").json()["data"]["alerts"]
                }
                & {"NaiveNoWorkerUp", "NaiveNoApiUp"}
            ),
            "NaiveNoWorkerUp and NaiveNoApiUp inactive",
        )
        for rule in rules():
            prometheus.query(rule["expr"])

        # Every query of the dashboard evaluates; those about what just ran show data.
        queries = {}
        for where, expr in dashboard_exprs().items():
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, (where, expr)
            queries[where] = expr
            prometheus.query(expr)
        for where in PANELS_WITH_DATA:
            prometheus.wait(lambda q=queries[where]: prometheus.query(q), f"data for {where}")
