"""Budgets: the most the account, or one of its keys, may commit per day or month."""

from __future__ import annotations

from flask import Blueprint, Response

from services.api import context
from services.api.contract import Reply, render, route
from shared.budgets import schemas
from shared.budgets import service as budgets
from shared.db import utcnow
from shared.errors import InvalidInput, NotFound
from shared.ledger import service as ledger

bp = Blueprint("budgets", __name__, url_prefix="/v1/budgets")


@route(
    bp,
    "POST",
    "",
    summary="Set a budget (replaces the one of the same scope, key and period)",
    body=schemas.BudgetSet,
    replies={
        201: Reply("Created.", schemas.Budget),
        200: Reply("Replaced the amount of the existing budget.", schemas.Budget),
    },
    errors=(InvalidInput,),
)
def set_budget(body: schemas.BudgetSet) -> Response:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        # Under the account's lock: two budgets of one kind never race into being.
        ledger.lock_account(session=session, account_id=account_id)
        saved = budgets.set_budget(session=session, account_id=account_id, request=body)
        view = budgets.view(session=session, budget=saved.budget, now=utcnow())
    return render(view, 201 if saved.created else 200)


@route(
    bp,
    "GET",
    "",
    summary="The account's budgets, with what each period has spent",
    replies={200: Reply("Every budget of the account and of its keys.", schemas.BudgetList)},
)
def list_budgets() -> schemas.BudgetList:
    account_id = context.authenticated_account()
    now = utcnow()
    with context.runtime().db.transaction() as session:
        rows = budgets.list_budgets(session=session, account_id=account_id)
        return schemas.BudgetList(
            data=[budgets.view(session=session, budget=row, now=now) for row in rows]
        )


@route(
    bp,
    "DELETE",
    "/<budget_id>",
    summary="Remove a budget",
    replies={204: Reply("Removed: it no longer limits submits.")},
    errors=(NotFound,),
)
def delete_budget(budget_id: str) -> Response:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        budgets.delete_budget(session=session, account_id=account_id, budget_id=budget_id)
    return Response(status=204)
