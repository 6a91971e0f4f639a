"""casebook's realtime channels: who may hear what, and which writes they hear.

Channels (every subscription authorized against the caller's token; another tenant's
channel is refused with 103, exactly as its resources are 404s over HTTP):

* ``case:{id}``: the case's transactions, subjects, imports and reports, as they commit;
* ``org:{id}``: the organization's cases (the case list);
* ``user:{id}``: notifications for one user (a case assigned to them changed), subscribed
  on the server's side at connect;
* ``queue:{org id}``: the organization's adjudication queue (reviewers and admins);
* ``job:{id}``: a job's progress (volatile: live only), for the import and report panels.

The browser connects with its access token in the connect command (never in a URL) and the
SDK refreshes it through ``getToken`` when it expires (error 109).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from casebook.auth import Principal
from casebook.models import (
    AdjudicationItem,
    Case,
    ImportRecord,
    Report,
    Role,
    Subject,
    Transaction,
)
from casebook.standing import Standing
from lockstep import (
    Database,
    JobProgress,
    Jobs,
    NotFoundError,
    PermissionDeniedError,
    Settings,
)
from lockstep.realtime import (
    Broadcast,
    ConnectRequest,
    Credentials,
    Namespace,
    Realtime,
    RowEvent,
)

TRANSACTION_FIELDS = ("posted_on", "amount_cents", "currency", "direction", "category")


def _ident(channel: str) -> int:
    try:
        return int(channel.partition(":")[2])
    except ValueError:
        raise NotFoundError(f"no channel {channel!r}") from None


def _change(event: RowEvent) -> Any:
    """What changed, enough for a page to refetch it: table, operation, key, and the
    transaction's own fields so a ledger can show it at once."""
    body: dict[str, Any] = {"table": event.table, "op": event.op, "key": event.key}
    if event.row is not None and event.table == "transactions":
        body["row"] = {f: event.row.get(f) for f in ("id", *TRANSACTION_FIELDS)}
    if event.key is None:
        body["count"] = event.count
    return body


def build(settings: Settings, db: Database, jobs: Jobs, standing: Standing, **kw: Any) -> Realtime:
    """casebook's realtime server on ``db`` (see the module doc). Every casebook process
    builds it, so what its writes publish is kept; one whose ``standing`` has no tokens
    (the operator CLI) serves no connection. A connection's user is checked to still
    stand (:mod:`casebook.standing`) at connect and at every token refresh."""

    async def authenticate(request: ConnectRequest) -> Credentials:
        principal, expires_at = await standing.authenticate_until(request.token)
        return Credentials(
            user=str(principal.user_id),
            expires_at=expires_at,
            channels=[f"user:{principal.user_id}"],
            state=principal,
        )

    async def own_case(credentials: Credentials, channel: str) -> None:
        principal: Principal = credentials.state
        async with db.reader() as session:
            org = await session.scalar(
                select(Case.organization_id).where(Case.id == _ident(channel))
            )
        if org != principal.organization_id:
            raise NotFoundError(f"case {channel} not found")

    async def own_org(credentials: Credentials, channel: str) -> None:
        if _ident(channel) != credentials.state.organization_id:
            raise NotFoundError("not your organization")

    async def own_user(credentials: Credentials, channel: str) -> None:
        if _ident(channel) != credentials.state.user_id:
            raise PermissionDeniedError("another user's notifications")

    async def reviewers(credentials: Credentials, channel: str) -> None:
        principal: Principal = credentials.state
        if _ident(channel) != principal.organization_id:
            raise NotFoundError("not your organization")
        if not principal.has_role(Role.REVIEWER):
            raise PermissionDeniedError("reviewer or admin role required")

    async def own_job(credentials: Credentials, channel: str) -> None:
        await jobs.get(_ident(channel), tenant=str(credentials.state.organization_id))

    def broadcast(table: Any, channel: str, *columns: str) -> Broadcast:
        return Broadcast(table.__table__, channel, data=_change, columns=columns)

    realtime = Realtime(
        settings,
        db,
        authenticate=authenticate,
        namespaces=[
            Namespace("case", authorize=own_case, presence=True),
            Namespace("org", authorize=own_org),
            Namespace("user", authorize=own_user),
            Namespace("queue", authorize=reviewers),
            Namespace("job", authorize=own_job, history=False),
        ],
        broadcasts=[
            broadcast(Transaction, "case:{case_id}", *TRANSACTION_FIELDS),
            broadcast(Subject, "case:{case_id}"),
            broadcast(ImportRecord, "case:{case_id}"),
            broadcast(Report, "case:{case_id}"),
            broadcast(Case, "case:{id}"),
            broadcast(Case, "org:{organization_id}"),
            broadcast(Case, "user:{assignee_id}"),
            broadcast(AdjudicationItem, "queue:{organization_id}"),
        ],
        version="casebook",
        **kw,
    )

    async def progress(report: JobProgress) -> None:
        await realtime.publish_now(f"job:{report.job_id}", report.to_json())

    jobs.on_progress(progress, live=True)
    return realtime
