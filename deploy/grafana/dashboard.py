"""The Grafana dashboard of Naive Video, as code: `make dashboard` writes naive-dashboard.json.

Built with grafana-foundation-sdk (Grafana's own typed builders, here for Grafana 11.6).
The JSON is checked in so that it can be imported as is; tests/test_dashboard.py fails
while it differs from a fresh render. Metric names: shared/metrics.py; alerts:
deploy/prometheus/alerts.yml. Gauges that every API replica exports alike
(naive_jobs_in_flight, naive_oldest_in_flight_job_age_seconds, naive_broker_queue_depth)
are aggregated with max, never sum.

    python deploy/grafana/dashboard.py           # rewrite naive-dashboard.json
    python deploy/grafana/dashboard.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

OUTPUT = Path(__file__).resolve().parent / "naive-dashboard.json"
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"
# User traffic only: probes and scrapes are not part of the API's objectives.
USER_ROUTES = 'route!~"/metrics|/healthz|/readyz"'
WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One panel: a time series unless `stat` is set; `min_max` fixes a 0..1 axis."""

    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int
    height: int = 8
    stat: bool = False
    stacked: bool = False
    min_max: bool = False
    # Stat panels: the value from which the number turns green (red below it).
    green_from: float | None = None


def quantiles(metric: str, by: str, *levels: float) -> list[Query]:
    """p50/p95/... of a histogram, by one label."""
    return [
        Query(
            f"histogram_quantile({level}, sum by (le, {by}) (rate({metric}_bucket{RATE})))",
            f"p{round(level * 100)} {{{{{by}}}}}",
        )
        for level in levels
    ]


def stage(title: str, description: str, metric: str, width: int) -> Panel:
    """A stage duration of the job pipeline, p50 and p95 by model."""
    return Panel(title, description, "s", quantiles(metric, "model", 0.5, 0.95), width)


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator}\n/\n{denominator}"


def credits_stat(title: str, description: str, kind: str) -> Panel:
    expr = f'sum(increase(naive_credits_total{{kind="{kind}"}}[24h]))'
    return Panel(title, description, "short", [Query(expr, kind)], 4, stat=True)


def up_stat(title: str, description: str, job: str, legend: str) -> Panel:
    expr = f'sum(up{{job="{job}"}})'
    return Panel(title, description, "short", [Query(expr, legend)], 4, stat=True, green_from=1)


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Job pipeline",
        [
            Panel(
                "Jobs submitted",
                "Jobs accepted by the API, per second, by model.",
                "ops",
                [Query(f"sum by (model) (rate(naive_jobs_submitted_total{RATE}))", "{{model}}")],
                8,
            ),
            Panel(
                "Jobs finished",
                "Jobs that reached a final state, per second, by status and model.",
                "ops",
                [
                    Query(
                        f"sum by (status, model) (rate(naive_jobs_finished_total{RATE}))",
                        "{{status}} {{model}}",
                    )
                ],
                8,
            ),
            Panel(
                "Jobs in flight by state",
                "Unfinished jobs by internal state, read from the database by the API. "
                "Every API replica exports the same value: max, not sum.",
                "short",
                [Query("max by (state) (naive_jobs_in_flight)", "{{state}}")],
                8,
                stacked=True,
            ),
            Panel(
                "Oldest in-flight job age",
                "Age of the oldest unfinished job. "
                "NaiveJobStuckPastDeadline fires above 30 minutes.",
                "s",
                [Query("max(naive_oldest_in_flight_job_age_seconds)", "oldest")],
                8,
            ),
            stage(
                "Submit → completed",
                "From submit to completed, p50 and p95 by model.",
                "naive_job_submit_to_completed_seconds",
                8,
            ),
            stage(
                "Queue wait",
                "From submit to the provider taking the job, p50 and p95 by model.",
                "naive_job_queue_wait_seconds",
                8,
            ),
            stage(
                "Provider time",
                "From the provider taking the job to its result, p50 and p95 by model.",
                "naive_job_provider_seconds",
                12,
            ),
            stage(
                "Settle → ingest",
                "From the provider's result to the job completed (settlement and the copy "
                "into the media library), p50 and p95 by model.",
                "naive_job_settle_to_ingest_seconds",
                12,
            ),
        ],
    ),
    (
        "Provider",
        [
            Panel(
                "Provider calls",
                "Calls to the provider per second, by operation and outcome.",
                "ops",
                [
                    Query(
                        "sum by (provider, operation, outcome) "
                        f"(rate(naive_provider_calls_total{RATE}))",
                        "{{provider}} {{operation}} {{outcome}}",
                    )
                ],
                8,
            ),
            Panel(
                "Provider error ratio",
                "Share of provider calls that ended unavailable, unknown or in an error, by "
                "provider. NaiveProviderErrorRateHigh fires above 10 % over 15 minutes.",
                "percentunit",
                [
                    Query(
                        ratio(
                            "sum by (provider) "
                            f'(rate(naive_provider_calls_total{{outcome!="ok"}}{RATE}))',
                            f"sum by (provider) (rate(naive_provider_calls_total{RATE}))",
                        ),
                        "{{provider}}",
                    )
                ],
                8,
                min_max=True,
            ),
            Panel(
                "Polls per job",
                "Provider status calls a finished job needed: p50, p95 and mean.",
                "short",
                [
                    *quantiles("naive_job_polls", "model", 0.5, 0.95),
                    Query(
                        ratio(
                            f"sum by (model) (rate(naive_job_polls_sum{RATE}))",
                            f"sum by (model) (rate(naive_job_polls_count{RATE}))",
                        ),
                        "mean {{model}}",
                    ),
                ],
                8,
            ),
            Panel(
                "Provider webhooks",
                "Provider callbacks received per second, by outcome.",
                "ops",
                [Query(f"sum by (outcome) (rate(naive_webhooks_total{RATE}))", "{{outcome}}")],
                24,
                height=6,
            ),
        ],
    ),
    (
        "Credits",
        [
            Panel(
                "Credits moved",
                "Credits held at submit, captured on completion and released on failure or "
                "cancellation (and the rest of a hold), per hour.",
                "short",
                [Query(f"sum by (kind) (rate(naive_credits_total{RATE})) * 3600", "{{kind}}")],
                12,
            ),
            credits_stat(
                "Captured (24 h)",
                "Credits charged for completed jobs over the last 24 hours.",
                "captured",
            ),
            credits_stat("Held (24 h)", "Credits held at submit over the last 24 hours.", "held"),
            credits_stat(
                "Released (24 h)",
                "Credits released (failed, cancelled, or the unused rest of a hold) over the "
                "last 24 hours.",
                "released",
            ),
        ],
    ),
    (
        "API",
        [
            Panel(
                "Requests by route and status",
                "API requests answered per second.",
                "reqps",
                [
                    Query(
                        f"sum by (route, method, status) (rate(naive_http_requests_total{RATE}))",
                        "{{method}} {{route}} {{status}}",
                    )
                ],
                8,
            ),
            Panel(
                "5xx ratio",
                "Share of user requests (probes and scrapes excluded) answered with a server "
                "error. NaiveApiErrorRateHigh fires above 5 % over 5 minutes.",
                "percentunit",
                [
                    Query(
                        ratio(
                            "sum(rate(naive_http_requests_total"
                            f'{{{USER_ROUTES},status=~"5.."}}{RATE}))',
                            f"sum(rate(naive_http_requests_total{{{USER_ROUTES}}}{RATE}))",
                        ),
                        "5xx",
                    )
                ],
                8,
            ),
            Panel(
                "Requests within 500 ms (SLO 99 %)",
                "Share of user requests answered within 500 ms; the objective is 99 %.",
                "percentunit",
                [
                    Query(
                        ratio(
                            "sum(rate(naive_http_request_duration_seconds_bucket"
                            f'{{le="0.5",{USER_ROUTES}}}{RATE}))',
                            "sum(rate(naive_http_request_duration_seconds_count"
                            f"{{{USER_ROUTES}}}{RATE}))",
                        ),
                        "within 500 ms",
                    )
                ],
                8,
                min_max=True,
            ),
            Panel(
                "Latency p50 by route",
                "Median API latency by route.",
                "s",
                quantiles("naive_http_request_duration_seconds", "route", 0.5),
                12,
            ),
            Panel(
                "Latency p99 by route",
                "99th percentile API latency by route.",
                "s",
                quantiles("naive_http_request_duration_seconds", "route", 0.99),
                12,
            ),
        ],
    ),
    (
        "Workers",
        [
            up_stat(
                "Workers up",
                "Worker hosts Prometheus scrapes successfully. "
                "NaiveNoWorkerUp fires at 0 for 5 minutes.",
                "naive-worker",
                "workers",
            ),
            up_stat(
                "API replicas up",
                "API replicas Prometheus scrapes successfully.",
                "naive-api",
                "api",
            ),
            Panel(
                "Broker queue depth",
                "Messages waiting in the broker (Redis LLEN), read by the API. Countdown "
                "tasks held by workers are not in it: compare with jobs in flight.",
                "short",
                [
                    Query("max by (queue) (naive_broker_queue_depth)", "{{queue}}"),
                    Query('max(naive_jobs_in_flight{state="queued"})', "jobs queued (database)"),
                ],
                8,
            ),
            Panel(
                "Ingest failures",
                'Failed ingest attempts per 5 minutes; final="true" means the job completed '
                "without its copy in the media library (NaiveIngestFailed).",
                "short",
                [
                    Query(
                        "sum by (final) (increase(naive_ingest_failures_total[5m]))",
                        "final={{final}}",
                    )
                ],
                8,
            ),
        ],
    ),
    (
        "Webhooks",
        [
            Panel(
                "Webhook deliveries by outcome",
                "Customer webhook delivery attempts per second: delivered (2xx), retried (a "
                "5xx, 408, 429 or no answer, tried again later), failed (given up).",
                "ops",
                [
                    Query(
                        f"sum by (outcome) (rate(naive_webhook_deliveries_total{RATE}))",
                        "{{outcome}}",
                    )
                ],
                8,
                stacked=True,
            ),
            Panel(
                "Delivery lag",
                "From a job event to its webhook delivered (retries included), p50 and p95.",
                "s",
                [
                    Query(
                        f"histogram_quantile({level}, sum by (le) "
                        f"(rate(naive_webhook_delivery_lag_seconds_bucket{RATE})))",
                        f"p{round(level * 100)}",
                    )
                    for level in (0.5, 0.95)
                ],
                8,
            ),
            Panel(
                "Oldest undelivered event",
                "Age of the oldest job event not yet fanned out, or due and not delivered "
                "(deliveries waiting out a retry excluded). NaiveWebhookBacklogGrowing fires "
                "past 10 minutes while it grows.",
                "s",
                [Query("max(naive_webhook_oldest_undelivered_event_age_seconds)", "oldest")],
                8,
            ),
        ],
    ),
    (
        "Fair share and spend",
        [
            Panel(
                "Jobs waiting for a slot",
                "Jobs in our fair queue by reason: provider (its capacity, or a model's, is in "
                "use) or account (the account's own cap is reached). Every API replica reports "
                "the same figure: max, not sum.",
                "short",
                [
                    Query(
                        "sum by (reason) (max by (account, reason) (naive_jobs_waiting))",
                        "{{reason}}",
                    )
                ],
                8,
                stacked=True,
            ),
            Panel(
                "Provider slots in use",
                "Jobs holding a provider slot (admitted, not yet delivered) against "
                "PROVIDER_CONCURRENCY.",
                "short",
                [
                    Query("max by (provider) (naive_provider_slots_in_use)", "{{provider}}"),
                    Query("max(naive_provider_capacity)", "capacity"),
                ],
                8,
            ),
            Panel(
                "Budget refusals",
                "Submits refused with 402 budget_exceeded per second, by budget scope and period.",
                "reqps",
                [
                    Query(
                        f"sum by (scope, period) (rate(naive_budget_refusals_total{RATE}))",
                        "{{scope}} {{period}}",
                    )
                ],
                8,
            ),
        ],
    ),
]


def target(ref_id: str, query: Query) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(query.expr)
        .legend_format(query.legend)
        .range()
        .editor_mode(QueryEditorMode.CODE)
    )


def build_panel(panel: Panel, panel_id: int, x: int, y: int) -> timeseries.Panel | stat.Panel:
    built: timeseries.Panel | stat.Panel
    if panel.stat:
        steps = [dashboard.Threshold(color="green" if panel.green_from is None else "red")]
        if panel.green_from is not None:
            steps.append(dashboard.Threshold(value=panel.green_from, color="green"))
        built = (
            stat.Panel()
            .color_scheme(
                dashboard_builder.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS)
            )
            .thresholds(
                dashboard_builder.ThresholdsConfig()
                .mode(dashboard.ThresholdsMode.ABSOLUTE)
                .steps(steps)
            )
            .reduce_options(
                common_builder.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
            )
            .color_mode(common.BigValueColorMode.VALUE)
            .graph_mode(common.BigValueGraphMode.AREA)
            .justify_mode(common.BigValueJustifyMode.AUTO)
            .orientation(common.VizOrientation.AUTO)
            .text_mode(common.BigValueTextMode.AUTO)
            .wide_layout(True)
            .show_percent_change(False)
        )
    else:
        built = (
            timeseries.Panel()
            .color_scheme(
                dashboard_builder.FieldColor().mode(dashboard.FieldColorModeId.PALETTE_CLASSIC)
            )
            .draw_style(common.GraphDrawStyle.LINE)
            .line_width(1)
            .fill_opacity(30 if panel.stacked else 10)
            .show_points(common.VisibilityMode.NEVER)
            .span_nulls(False)
            .stacking(
                common_builder.StackingConfig()
                .mode(common.StackingMode.NORMAL if panel.stacked else common.StackingMode.NONE)
                .group("A")
            )
            .legend(
                common_builder.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_builder.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
        if panel.min_max:
            built = built.min(0).max(1)
    built = (
        built.id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .grid_pos(dashboard.GridPos(h=panel.height, w=panel.width, x=x, y=y))
        .unit(panel.unit)
    )
    for ref_id, query in zip("ABCDEFGH", panel.queries, strict=False):
        built = built.with_target(target(ref_id, query))
    return built


def build() -> dashboard.Dashboard:
    """The dashboard: each row, then its panels laid out left to right, line by line."""
    board = (
        dashboard_builder.Dashboard("Naive Video")
        .uid("naive-video")
        .description(
            "Naive Video: job pipeline, provider, credits, API, workers and webhooks. "
            "Metrics: shared/metrics.py; alerts: deploy/prometheus/alerts.yml."
        )
        .tags(["naive", "naive-video"])
        .editable()
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("")
        .annotation(
            dashboard_builder.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .with_variable(
            dashboard_builder.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
        )
    )
    panel_id, y = 1, 0
    for title, panels in ROWS:
        board = board.with_row(
            dashboard_builder.Row(title)
            .id(panel_id)
            .grid_pos(dashboard.GridPos(h=1, w=WIDTH, x=0, y=y))
        )
        panel_id, y, x, line = panel_id + 1, y + 1, 0, 0
        for panel in panels:
            if x + panel.width > WIDTH:
                x, y, line = 0, y + line, 0
            board = board.with_panel(build_panel(panel, panel_id, x, y))
            panel_id, x, line = panel_id + 1, x + panel.width, max(line, panel.height)
        y += line
    return board.build()


def render() -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `make dashboard`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
