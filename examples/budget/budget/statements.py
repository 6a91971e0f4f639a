"""The monthly statement e-mail: a durable job, enqueued in the transaction that asks for it.

``POST /households/{id}/statements`` writes a ``Statement`` row and enqueues
:func:`send_statement` in one transaction, so the job exists if and only if the request
committed. The job renders the month's summary into the ``outbox`` and marks the statement
sent in one fenced transaction (``ctx.transaction()``): a retried or duplicated attempt
cannot write the e-mail twice.
"""

from __future__ import annotations

from budget.figures import Figures, MonthSummary
from budget.models import Outbox, Statement
from lockstep import JobContext, TaskRegistry

tasks = TaskRegistry()


def render(summary: MonthSummary) -> tuple[str, str]:
    """The e-mail's subject and body (a plain function: tested without a database)."""

    def euros(cents: int) -> str:
        return f"{cents / 100:,.2f}"

    lines = [
        f"Income   {euros(summary.income_cents):>12}",
        f"Taxes    {euros(summary.tax_cents):>12}",
        f"Spending {euros(summary.spending_cents):>12}",
        f"Net      {euros(summary.net_cents):>12}",
        "",
        *(f"  {a.name:<20} {euros(a.amount_cents):>12}" for a in summary.by_category),
    ]
    return f"Your budget for {summary.month}", "\n".join(lines) + "\n"


@tasks.task(name="budget.send_statement", queue="mail", unique="statement:{statement_id}")
async def send_statement(ctx: JobContext, statement_id: int) -> dict[str, int]:
    figures: Figures = ctx.state
    async with figures.database.reader() as session:
        statement = await session.get(Statement, statement_id)
    if statement is None:  # its household was deleted meanwhile
        return {"outbox_id": 0}
    subject, body = render(await figures.summary(statement.household_id, statement.month))
    async with ctx.transaction() as session:  # the e-mail and "sent" commit together, once
        mail = Outbox(
            statement_id=statement_id, to_address=statement.email, subject=subject, body=body
        )
        session.add(mail)
        sent = await session.get(Statement, statement_id)
        if sent is not None:
            sent.status = "sent"
        await session.flush()
    return {"outbox_id": mail.id}
