"""Tasks and the registry that names them.

A :class:`TaskRegistry` is an ordinary object (no global): an application builds one, its
workers run the tasks in it, and enqueueing checks names and arguments against it::

    tasks = TaskRegistry()

    @tasks.task(queue="reports", max_attempts=3, timeout=300)
    async def render(ctx: JobContext, report_id: int) -> dict[str, int]: ...

    tasks.schedule("nightly", render, cron="0 3 * * *", args={"report_id": 0})
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

import orjson

from lockstep.exceptions import ConfigurationError
from lockstep.jobs.backoff import Backoff
from lockstep.jobs.cron import Cron
from lockstep.jobs.errors import JobArgumentsError, UnknownTaskError
from lockstep.jobs.limits import KeyLimits, QueueLimits, Rate
from lockstep.jobs.schedule import CatchUp, Schedule

KeySpec = str | Callable[[Mapping[str, Any]], str | None] | None
"""A key computed from a job's args: a ``str.format`` template over them, or a callable."""

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def seconds(value: float | dt.timedelta | None) -> float | None:
    """Seconds as a float, from a number or a timedelta (None stays None)."""
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


@dataclass(frozen=True, eq=False)
class Task:
    """A registered job handler and its defaults. Calling it calls the handler directly.

    ``result_ttl`` is how long the return value is kept (None: the settings default; 0: not
    kept). ``process=True`` runs a synchronous handler in the worker's process pool (for
    CPU-heavy work; it cannot take a ``ctx``). ``limit_key`` names the key that
    ``key_limits`` apply to.
    """

    name: str
    fn: Callable[..., Any]
    queue: str
    priority: int = 0
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    timeout: float | None = None
    unique: KeySpec = None
    result_ttl: float | None = None
    process: bool = False
    limit_key: KeySpec = None
    key_limits: KeyLimits | None = None
    tenant: KeySpec = None

    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    @functools.cached_property
    def wants_context(self) -> bool:
        """Whether the handler takes a :class:`JobContext` as its first argument ``ctx``."""
        params = list(self.signature.parameters.values())
        return bool(params) and params[0].name == "ctx"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def encode_args(self, args: Mapping[str, Any] | None) -> str:
        """The args as JSON text; raises :class:`JobArgumentsError` unless they are plain JSON
        values that come back equal, and bind to the handler's parameters."""
        values = {} if args is None else args
        if not isinstance(values, Mapping):
            raise JobArgumentsError(
                f"args of task {self.name!r} must be a mapping of keyword arguments, "
                f"not {type(values).__name__}"
            )
        try:
            data = orjson.dumps(values, option=_OPTIONS)
            same = orjson.loads(data) == values
        except (TypeError, orjson.JSONEncodeError):
            same = False
        if not same:
            raise JobArgumentsError(
                f"args of task {self.name!r} must be JSON values (dict with str keys, list, "
                f"str, int, float, bool, None): {_first_bad(values)}",
                details=[{"loc": ["args"], "msg": _first_bad(values)}],
            )
        self._check_binding(values)
        return data.decode()

    @functools.cached_property
    def _parameters(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """(accepted names, required names) of a plain keyword signature, or None when the
        signature needs the general check (positional-only, ``*args``, ``**kwargs``)."""
        params = list(self.signature.parameters.values())
        if self.wants_context:
            params = params[1:]
        plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if any(p.kind not in plain for p in params):
            return None
        required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
        return frozenset(p.name for p in params), required

    def _check_binding(self, values: Mapping[str, Any]) -> None:
        simple = self._parameters
        if simple is not None and simple[1] <= values.keys() <= simple[0]:
            return  # the fast path of every enqueue; the general check below explains misfits
        signature = self.signature
        try:
            if self.wants_context:
                signature.bind(None, **values)
            else:
                signature.bind(**values)
        except TypeError as exc:
            raise JobArgumentsError(
                f"args do not fit task {self.name!r}: {exc}",
                details=[{"loc": ["args"], "msg": str(exc)}],
            ) from None

    def unique_key_for(self, args: Mapping[str, Any]) -> str | None:
        return _render(self.unique, args, self.name, "unique")

    def limit_key_for(self, args: Mapping[str, Any]) -> str | None:
        return _render(self.limit_key, args, self.name, "limit_key")

    def tenant_for(self, args: Mapping[str, Any]) -> str | None:
        return _render(self.tenant, args, self.name, "tenant")


def _render(spec: KeySpec, args: Mapping[str, Any], task: str, what: str) -> str | None:
    if spec is None:
        return None
    if callable(spec):
        return spec(args)
    try:
        return spec.format(**args)
    except (KeyError, IndexError, ValueError) as exc:
        raise JobArgumentsError(
            f"{what} template {spec!r} of task {task!r} does not fit the args: {exc!r}"
        ) from None


def _first_bad(value: Any, path: str = "args") -> str:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            found = _first_bad(item, f"{path}[{key!r}]")
            if found:
                return found
        return ""
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_bad(item, f"{path}[{index}]")
            if found:
                return found
        return ""
    if value is None or isinstance(value, bool | str):
        return ""
    if isinstance(value, int):
        return "" if -(2**63) <= value < 2**64 else f"{path} is an integer too large for JSON"
    if isinstance(value, float):
        return "" if value == value and abs(value) != float("inf") else f"{path} is {value!r}"
    hint = ""
    if isinstance(value, dt.date | dt.datetime | dt.time):
        hint = " (pass value.isoformat())"
    elif isinstance(value, tuple):
        hint = " (pass a list)"
    return f"{path} is a {type(value).__name__}{hint}"


class TaskRegistry:
    """The tasks, queue limits and schedules of one application.

    ``default_queue``, ``max_attempts`` and ``backoff`` are defaults for every task that does
    not set its own. Registering two tasks (or schedules) under one name raises
    :class:`ConfigurationError`.
    """

    def __init__(
        self,
        *,
        default_queue: str = "default",
        max_attempts: int = 5,
        backoff: Backoff | None = None,
    ) -> None:
        self.default_queue = default_queue
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._tasks: dict[str, Task] = {}
        self._queues: dict[str, QueueLimits] = {}
        self._schedules: dict[str, Schedule] = {}

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | dt.timedelta | None = None,
        unique: KeySpec = None,
        result_ttl: float | dt.timedelta | None = None,
        process: bool = False,
        limit_key: KeySpec = None,
        key_limits: KeyLimits | None = None,
        tenant: KeySpec = None,
    ) -> Callable[[Callable[..., Any]], Task]: ...
    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | dt.timedelta | None = None,
        unique: KeySpec = None,
        result_ttl: float | dt.timedelta | None = None,
        process: bool = False,
        limit_key: KeySpec = None,
        key_limits: KeyLimits | None = None,
        tenant: KeySpec = None,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a handler (sync or async) as a task; usable bare or with options.

        Lower ``priority`` runs first. Raises :class:`ConfigurationError` for a duplicate
        name, a process task that is async or takes ``ctx``, or ``key_limits`` without
        ``limit_key``.
        """

        def register(function: Callable[..., Any]) -> Task:
            task = Task(
                name=name or f"{function.__module__}.{function.__qualname__}",
                fn=function,
                queue=queue or self.default_queue,
                priority=priority,
                max_attempts=max_attempts if max_attempts is not None else self.max_attempts,
                backoff=backoff or self.backoff,
                timeout=seconds(timeout),
                unique=unique,
                result_ttl=seconds(result_ttl),
                process=process,
                limit_key=limit_key,
                key_limits=key_limits,
                tenant=tenant,
            )
            self.add(task)
            return task

        return register(fn) if fn is not None else register

    def add(self, task: Task) -> None:
        """Register a :class:`Task` built by hand (see :meth:`task`)."""
        if task.name in self._tasks:
            raise ConfigurationError(f"task {task.name!r} is registered twice")
        if task.max_attempts < 1:
            raise ConfigurationError(f"task {task.name!r}: max_attempts must be >= 1")
        if task.process and (task.is_async or task.wants_context):
            raise ConfigurationError(
                f"task {task.name!r}: a process task must be a plain synchronous function "
                "without ctx (use ctx.run_in_process from an async task instead)"
            )
        if task.key_limits is not None and task.limit_key is None:
            raise ConfigurationError(f"task {task.name!r}: key_limits need a limit_key")
        self._tasks[task.name] = task

    def queue(
        self, name: str, *, concurrency: int | None = None, rate: Rate | None = None
    ) -> QueueLimits:
        """Limit queue ``name`` across all workers: ``concurrency`` running jobs at most,
        ``rate`` starts at most."""
        limits = QueueLimits(concurrency=concurrency, rate=rate)
        self._queues[name] = limits
        return limits

    def schedule(
        self,
        name: str,
        task: Task | str,
        *,
        cron: str | None = None,
        every: float | dt.timedelta | None = None,
        args: Mapping[str, Any] | None = None,
        catch_up: CatchUp = "latest",
        max_catch_up: int = 100,
    ) -> Schedule:
        """Enqueue ``task`` at every tick of ``cron`` (UTC) or ``every``; see :class:`Schedule`.

        The args are checked now. Raises :class:`ConfigurationError` for a bad expression or
        a duplicate name, :class:`UnknownTaskError` for an unregistered task.
        """
        resolved = self.get(task) if isinstance(task, str) else self.get(task.name)
        resolved.encode_args(args or {})
        if name in self._schedules:
            raise ConfigurationError(f"schedule {name!r} is registered twice")
        schedule = Schedule(
            name=name,
            task=resolved.name,
            cron=Cron.parse(cron) if cron is not None else None,
            every=seconds(every),
            args=dict(args or {}),
            catch_up=catch_up,
            max_catch_up=max_catch_up,
        )
        self._schedules[name] = schedule
        return schedule

    def get(self, name: str) -> Task:
        """The task called ``name``; raises :class:`UnknownTaskError` listing known names."""
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTaskError(
                f"no task named {name!r} is registered (known: {known})",
                details=[{"loc": ["task"], "msg": f"unknown task {name!r}"}],
            ) from None

    def resolve(self, task: Task | str) -> Task:
        """``task`` itself if it is registered here, else the task of that name."""
        if isinstance(task, Task):
            registered = self.get(task.name)
            if registered is not task:
                raise UnknownTaskError(f"task {task.name!r} belongs to another registry")
            return task
        return self.get(task)

    def queue_limits(self, name: str) -> QueueLimits:
        return self._queues.get(name, QueueLimits())

    def is_limited(self, queue: str) -> bool:
        """Whether claims in ``queue`` must go through the serialized, limit-checking path."""
        if self.queue_limits(queue).limited:
            return True
        return any(t.key_limits is not None and t.queue == queue for t in self._tasks.values())

    @property
    def queues(self) -> list[str]:
        """Every queue a task or a limit names, sorted."""
        return sorted({t.queue for t in self._tasks.values()} | set(self._queues))

    @property
    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)
