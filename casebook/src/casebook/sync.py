"""casebook offline: the shapes its clients sync (``GET /v1/shape``).

Every shape is scoped to the caller's organization, whatever ``where`` a client sends:
another tenant's rows are never returned, and a row moved to another organization reaches
the old one's clients as a delete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request

from casebook.auth import Principal, TokenService
from casebook.models import AdjudicationItem, Case, Subject, Transaction
from lockstep import AuthenticationError
from lockstep.offline import Shape


def principal_of(tokens: TokenService, request: Request) -> Principal:
    """The caller from ``Authorization: Bearer <access token>``; 401 otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("missing bearer token")
    return tokens.verify(token.strip(), "access")


def shapes(tokens: TokenService) -> list[Shape]:
    """cases, subjects, adjudication_items and transactions of the caller's organization."""

    def organization(request: Request) -> Mapping[str, Any]:
        return {"organization_id": principal_of(tokens, request).organization_id}

    scope: Callable[[Request], Mapping[str, Any]] = organization
    return [
        Shape(
            Case.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "reference",
                "title",
                "description",
                "status",
                "priority",
                "assignee_id",
                "opened_on",
                "closed_on",
                "version",
                "updated_at",
            ],
        ),
        Shape(
            Subject.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "kind",
                "name",
                "country",
                "risk_level",
                "notes",
                "version",
                "updated_at",
            ],
        ),
        Shape(
            AdjudicationItem.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "transaction_id",
                "status",
                "reason",
                "assignee_id",
                "decided_by_id",
                "decided_at",
                "created_at",
            ],
        ),
        Shape(
            Transaction.__table__,  # type: ignore[arg-type]
            scope=scope,
            columns=[
                "id",
                "case_id",
                "subject_id",
                "account_id",
                "posted_on",
                "amount_cents",
                "currency",
                "direction",
                "category",
                "counterparty",
                "description",
                "flagged",
                "version",
            ],
        ),
    ]
