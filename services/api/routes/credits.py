"""GET /v1/credits: balance, held, available, and a page of the ledger entries."""

from __future__ import annotations

from flask import Blueprint

from services.api import context
from services.api.contract import Reply, route
from shared.errors import InvalidInput
from shared.ledger import service as ledger
from shared.ledger.schemas import Credits, CreditsQuery

bp = Blueprint("credits", __name__, url_prefix="/v1/credits")


@route(
    bp,
    "GET",
    "",
    summary="Balance, held, available and the ledger entries, newest first, paginated",
    query=CreditsQuery,
    replies={200: Reply("The account's credits.", Credits)},
    errors=(InvalidInput,),
)
def credits(query: CreditsQuery) -> Credits:
    account_id = context.authenticated_account()
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        totals = ledger.balance(session=session, account_id=account_id)
        entries, next_cursor = ledger.entries(
            session=session, account_id=account_id, limit=query.limit, cursor=query.cursor
        )
    return Credits.of(totals, entries, float(runtime.settings.credit_value_usd), next_cursor)
