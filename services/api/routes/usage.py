"""GET /v1/usage: what the account was charged, and what the provider billed, per model, day
or key, as JSON or CSV."""

from __future__ import annotations

from flask import Blueprint, Response, request

from services.api import context
from services.api.contract import Reply, render, route
from shared.db import utcnow
from shared.errors import InvalidInput
from shared.ledger import usage as ledger_usage
from shared.ledger.schemas import CSV_MEDIA_TYPE, Usage, UsageQuery

bp = Blueprint("usage", __name__, url_prefix="/v1/usage")


@route(
    bp,
    "GET",
    "",
    summary="Charges and provider costs in a time range, per model, day or key (JSON or CSV)",
    query=UsageQuery,
    replies={
        200: Reply(
            "The usage; as CSV (a header, one line per group, a `total` line) with "
            "`format=csv` or `Accept: text/csv`.",
            Usage,
            also=(CSV_MEDIA_TYPE,),
        )
    },
    errors=(InvalidInput,),
)
def usage(query: UsageQuery) -> Response:
    account_id = context.authenticated_account()
    runtime = context.runtime()
    start, end = ledger_usage.time_range(query.start, query.end, now=utcnow())
    with runtime.db.transaction() as session:
        found = ledger_usage.usage(
            session=session,
            account_id=account_id,
            start=start,
            end=end,
            group_by=query.group_by,
        )
    answer = Usage.of(found, float(runtime.settings.credit_value_usd))
    vary = {"Vary": "Accept"}  # the same URL answers JSON or CSV
    if not _wants_csv(query):
        return render(answer, headers=vary)
    name = f"usage-{start:%Y%m%d}-{end:%Y%m%d}-by-{query.group_by}.csv"
    return Response(
        answer.to_csv(),
        mimetype=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"', **vary},
    )


def _wants_csv(query: UsageQuery) -> bool:
    """`format` decides; without it, `Accept` (JSON unless CSV is preferred)."""
    if query.format is not None:
        return query.format == "csv"
    preferred = request.accept_mimetypes.best_match(["application/json", CSV_MEDIA_TYPE])
    return preferred == CSV_MEDIA_TYPE
