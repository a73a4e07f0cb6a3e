"""The operator API (`/v1/admin/…`): what `naive admin` does, over HTTP, for operators.

Authenticated by the operator token from the configuration (`ADMIN_TOKEN`), never by an
account's API key. Without a token configured the API is off: its routes answer 404, as
a path that does not exist.
"""

from __future__ import annotations

import hmac
import uuid

from flask import Blueprint, abort

from services.api import context
from services.api.contract import RATE_LIMITED, Reply, parse_body, route
from shared.errors import InvalidInput, NotFound, Unauthorized
from shared.ledger import service as ledger
from shared.ledger.schemas import CreditGrant, CreditsGranted

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


def _operator() -> None:
    """Pass an operator (the `ADMIN_TOKEN` as a bearer token); 404 while the API is off."""
    token = context.runtime().settings.admin_token
    if token is None:
        abort(404)
    given = context.bearer_key() or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("The operator token (ADMIN_TOKEN) is missing or wrong.")


@route(
    bp,
    "POST",
    "/accounts/<account_id>/credits",
    summary="Top up an account (operators)",
    body=CreditGrant,
    replies={
        201: Reply("The top-up's ledger entry and the account's credits.", CreditsGranted),
        429: RATE_LIMITED,
    },
    errors=(InvalidInput, NotFound, Unauthorized),
    parse=False,  # after the token: a caller without it learns nothing of the route
    security=("operator",),
)
def grant_credits(account_id: str) -> CreditsGranted:
    """A `topup` ledger entry for the account, as `naive admin grant-credits` writes."""
    _operator()
    body = parse_body(CreditGrant)
    try:
        key = uuid.UUID(account_id)
    except ValueError:
        raise NotFound(f"No account {account_id!r}.") from None
    with context.runtime().db.transaction() as session:
        entry, totals = ledger.grant(
            session=session, account_id=key, credits=body.credits, note=body.note
        )
        return CreditsGranted.of(key, entry, totals)
