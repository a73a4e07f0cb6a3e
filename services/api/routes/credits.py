"""GET /v1/credits: balance, held, available, and the ledger entries."""

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
    summary="Balance, held, available and the ledger entries",
    query=CreditsQuery,
    replies={200: Reply("The account's credits.", Credits)},
    errors=(InvalidInput,),
)
def credits(query: CreditsQuery) -> Credits:
    account_id = context.authenticated_account()
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        totals = ledger.balance(session=session, account_id=account_id)
        entries = ledger.entries(session=session, account_id=account_id, limit=query.limit)
    return Credits.of(totals, entries, float(runtime.settings.credit_value_usd))
