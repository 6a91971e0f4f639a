"""How each kind of attempt ending is written: one fenced UPDATE per kind, built here as a
plain function of the outcomes (no I/O), executed by the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lockstep.jobs.backends import JobBackend, JobRows
from lockstep.jobs.outcome import Outcome


def finish_sql(
    b: JobBackend, kind: str, group: Sequence[tuple[int, int, Outcome]]
) -> tuple[str, str, JobRows]:
    """For outcomes of one ``kind``: the SET clause, the state the fence requires, and the
    per-job values it reads (``id``, ``attempt``, then the kind's values).

    ``effects`` is a success committed by the handler's own transaction whose result is
    still to come: the lease stays on the row so result waiters keep waiting (until the
    ``result`` write, or the lease's end if the worker dies first).
    """
    columns: tuple[tuple[str, str], ...] = (("id", "bigint"), ("attempt", "int"))
    rows: list[tuple[Any, ...]]
    if kind in ("succeeded", "result", "effects"):
        columns += (("result", "text"), ("ttl", "float8"))
        rows = [(i, a, o.result, float(o.result_ttl)) for i, a, o in group]
    elif kind in ("retry", "failed"):
        columns += (
            ("delay", "float8"),
            ("reason", "text"),
            ("error", "text"),
            ("traceback", "text"),
        )
        rows = [(i, a, o.delay, o.reason, o.error, o.traceback) for i, a, o in group]
    elif kind == "snoozed":
        columns += (("delay", "float8"),)
        rows = [(i, a, o.delay) for i, a, o in group]
    elif kind in ("aborted", "released"):
        rows = [(i, a) for i, a, _ in group]
    else:
        raise ValueError(f"unknown outcome kind {kind!r}")
    values = b.by_job(columns, rows)
    v = values.ref
    running = "'running'"
    final_if_aborted = f"CASE WHEN lockstep_jobs.abort_requested THEN {b.now} END"

    def requeue() -> str:  # back to the queue (or the schedule), unless an abort came
        return (
            "state = CASE WHEN lockstep_jobs.abort_requested THEN 'aborted' "
            f"WHEN {v('delay')} > 0 THEN 'scheduled' ELSE 'queued' END, "
            f"run_at = {b.later(v('delay'))}, finished_at = {final_if_aborted}"
        )

    if kind in ("succeeded", "result", "effects"):
        kept = f"{v('ttl')} > 0"
        sets = (
            f"result = CASE WHEN {kept} THEN {v('result')} END, "
            f"result_expires_at = CASE WHEN {kept} THEN {b.later(v('ttl'))} END"
        )
        if kind == "result":
            running = "'succeeded'"
            sets += ", lease_expires_at = NULL"
        else:
            sets += f", state = 'succeeded', finished_at = {b.now}, reason = NULL"
            if kind == "succeeded":
                sets += ", lease_expires_at = NULL"
    elif kind in ("retry", "failed"):
        sets = (
            f"reason = {v('reason')}, error = {v('error')}, traceback = {v('traceback')}, "
            "lease_expires_at = NULL, "
            f"errors = {b.append_error('lockstep_jobs.errors', v('attempt'), v('error'))}, "
        )
        if kind == "failed":
            sets += f"state = 'failed', finished_at = {b.now}"
        else:
            sets += requeue()
    elif kind == "snoozed":
        sets = (
            f"{requeue()}, "
            "attempt = lockstep_jobs.attempt - 1, snoozes = lockstep_jobs.snoozes + 1, "
            "lease_expires_at = NULL"
        )
    elif kind == "aborted":
        sets = (
            f"state = 'aborted', reason = 'aborted', finished_at = {b.now}, lease_expires_at = NULL"
        )
    else:  # released
        sets = (
            "state = CASE WHEN lockstep_jobs.abort_requested THEN 'aborted' "
            "ELSE 'queued' END, "
            f"finished_at = {final_if_aborted}, "
            "attempt = lockstep_jobs.attempt - 1, lease_expires_at = NULL"
        )
    return sets, running, values
