"""The errors the jobs system raises on purpose, each a :class:`LockstepError` subclass.

Enqueue-time errors (:class:`UnknownTaskError`, :class:`JobArgumentsError`) are raised before
anything is written, so a bad call never leaves a job behind.
"""

from __future__ import annotations

from typing import Any

from lockstep.exceptions import ConflictError, LockstepError, NotFoundError, ValidationFailedError


class UnknownTaskError(ValidationFailedError):
    """A task name that is not registered in the :class:`TaskRegistry` being used."""

    code = "unknown_task"


class JobArgumentsError(ValidationFailedError):
    """Job arguments that are not plain JSON values (they must survive a JSON round trip)."""

    code = "invalid_job_arguments"


class JobNotFoundError(NotFoundError):
    """No job with that id (never enqueued, or already pruned)."""

    code = "job_not_found"


class JobStateError(ConflictError):
    """The job is in a state that does not allow the operation (retry a running job, cancel a
    finished one); ``details`` holds the current state."""

    code = "job_state_conflict"


class LeaseLostError(LockstepError):
    """This worker no longer owns the job attempt: its lease expired and the job was handed to
    another attempt (or cancelled). Whatever the stale attempt tried to commit is rolled back."""

    code = "job_lease_lost"
    status_code = 409


class ResultUnavailableError(LockstepError):
    """The job finished but its result cannot be returned: it was not kept (the task stores no
    result), or its lifetime is over. ``details`` says which."""

    code = "job_result_unavailable"
    status_code = 404


class JobFailedError(LockstepError):
    """Awaiting the result of a job that ended failed, cancelled or aborted.

    ``state`` is the final state; ``details`` carries the last error message, if any.
    """

    code = "job_failed"
    status_code = 409

    def __init__(self, message: str, *, state: str, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.state = state
