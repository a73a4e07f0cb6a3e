"""GET /v1/credits: balance, held, available, and the ledger entries."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from services.api import context
from services.api.params import int_arg
from shared import ledger

bp = Blueprint("credits", __name__, url_prefix="/v1/credits")


@bp.get("")
def credits() -> Response:
    account_id = context.authenticated_account()
    limit = int_arg("limit", 100, minimum=1, maximum=1000)
    runtime = context.runtime()
    with runtime.db.transaction() as session:
        totals = ledger.balance(session=session, account_id=account_id)
        entries = ledger.entries(session=session, account_id=account_id, limit=limit)
        rendered = [
            {
                "id": str(entry.id),
                "kind": entry.kind,
                "amount": ledger.to_credits(entry.amount),
                "job_id": str(entry.job_id) if entry.job_id else None,
                "note": entry.note,
                "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
            }
            for entry in entries
        ]
    return jsonify(
        {
            "balance": ledger.to_credits(totals.balance),
            "held": ledger.to_credits(totals.held),
            "available": ledger.to_credits(totals.available),
            "credit_value_usd": float(runtime.settings.credit_value_usd),
            "entries": rendered,
        }
    )
