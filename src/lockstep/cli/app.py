"""The application the ``lockstep`` command operates on, given as ``--app module:attr``.

``attr`` is a callable that builds the app (called with settings overrides as keywords,
e.g. ``data_dir=Path(...)`` for ``--data-dir``, when it accepts them), or the app object
itself. The app is any object with these attributes (a structural protocol: nothing to
import or subclass, so an application does not depend on the CLI's packages):

=============== ============================================ ==============================
attribute       type                                         used by
=============== ============================================ ==============================
``database``    :class:`lockstep.Database` (required)        every command
``lockstep``    :class:`lockstep.Lockstep` (optional)        ``cache stats``, relay lag
``aggregates``  :class:`lockstep.Aggregates` (optional)      ``rollups``, ``migration rollup``
``jobs``        :class:`lockstep.Jobs` (optional)            ``jobs stats`` (queues known
                                                             to the app even when empty)
``migrations``  path of the Alembic script dir (optional)    ``migration ...``
=============== ============================================ ==============================

The database given must be the one the application writes through (change capture and
rollup maintenance installed), so that what the CLI writes (``rollups repair``, job
retries) reaches caches and rollups like any write of the application.

A bad ``--app`` is an :class:`AppError` whose message says what is wrong.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lockstep.aggregates import Aggregates
from lockstep.db import Database
from lockstep.exceptions import LockstepError
from lockstep.jobs import Jobs
from lockstep.runtime import Lockstep

ENV_VAR = "LOCKSTEP_APP"


class AppError(Exception):
    """The app cannot be found or built, or lacks what a command needs (usage error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CliApp(Protocol):
    """What ``lockstep --app`` needs of an application (see the table above)."""

    @property
    def database(self) -> Database: ...


@dataclass(frozen=True, slots=True)
class AppSource:
    """Where the app comes from: an import path (``--app``) or, for an application that
    mounts lockstep's command groups in its own CLI, a factory it hands over."""

    path: str | None = None
    factory: Callable[..., Any] | None = None

    def load(self, **overrides: Any) -> OperatedApp:
        """Build the app, passing ``overrides`` (settings) to a factory that accepts them."""
        target = self.factory if self.factory is not None else self._resolve()
        label = self.path or str(getattr(target, "__qualname__", None) or repr(target))
        if isinstance(getattr(target, "database", None), Database):
            if overrides:
                given = ", ".join(f"--{k.replace('_', '-')}" for k in overrides)
                raise AppError(f"{label} is an app object, not a factory: {given} cannot apply")
            app = target
        elif callable(target):
            accepted = _accepted(target, overrides, label)
            try:
                app = target(**accepted)
            except LockstepError:  # bad settings and the like: the caller prints the message
                raise
            except Exception as exc:
                raise AppError(
                    f"{label}: building the app failed: {type(exc).__name__}: {exc}"
                ) from None
        else:
            app = target
        if not isinstance(getattr(app, "database", None), Database):
            raise AppError(
                f"{label} did not give a lockstep app: it needs a `database` attribute holding "
                "a lockstep.Database (see docs/cli.md)"
            )
        return OperatedApp(app, label)

    def _resolve(self) -> Any:
        if not self.path:
            raise AppError(f"no app given: pass --app module:attr or set {ENV_VAR}")
        module_name, colon, attr = self.path.partition(":")
        if not colon or not module_name or not attr:
            raise AppError(f"--app {self.path!r}: expected module:attr (e.g. myapp.ops:app)")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                raise AppError(f"--app {self.path!r}: no module named {exc.name!r}") from None
            raise AppError(f"--app {self.path!r}: importing it failed: {exc}") from None
        except Exception as exc:  # the app's own import-time error, reported in one line
            raise AppError(
                f"--app {self.path!r}: importing it failed: {type(exc).__name__}: {exc}"
            ) from None
        target: Any = module
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise AppError(f"--app {self.path!r}: {module_name} has no {attr!r}") from None
        return target


def _accepted(
    factory: Callable[..., Any], overrides: Mapping[str, Any], label: str
) -> dict[str, Any]:
    """The overrides ``factory`` can take: all with ``**kwargs``, else those it names."""
    if not overrides:
        return {}
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: try them all
        return dict(overrides)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(overrides)
    names = {p.name for p in parameters}
    refused = [k for k in overrides if k not in names]
    if refused:
        given = ", ".join(f"--{k.replace('_', '-')}" for k in refused)
        raise AppError(f"{label} takes no {', '.join(refused)}: {given} cannot apply")
    return dict(overrides)


class OperatedApp:
    """The loaded app, with each optional part checked when a command asks for it."""

    def __init__(self, app: Any, label: str) -> None:
        self.app = app
        self.label = label
        self.database: Database = app.database

    def _part(self, name: str, kind: type[Any], what: str) -> Any:
        value = getattr(self.app, name, None)
        if value is None:
            raise AppError(f"{self.label} has no `{name}` ({what})")
        if not isinstance(value, kind):
            raise AppError(
                f"{self.label}: `{name}` is a {type(value).__name__}, expected {kind.__name__}"
            )
        return value

    @property
    def runtime(self) -> Lockstep | None:
        """The app's :class:`Lockstep` runtime, if it has one."""
        runtime = getattr(self.app, "lockstep", None)
        return runtime if isinstance(runtime, Lockstep) else None

    @property
    def aggregates(self) -> Aggregates:
        found: Aggregates = self._part(
            "aggregates", Aggregates, "its rollups, a lockstep.Aggregates"
        )
        return found

    @property
    def jobs(self) -> Jobs | None:
        jobs = getattr(self.app, "jobs", None)
        return jobs if isinstance(jobs, Jobs) else None

    @property
    def migrations(self) -> Path:
        value = getattr(self.app, "migrations", None)
        if not isinstance(value, str | Path):
            raise AppError(f"{self.label} has no `migrations` (its Alembic script directory)")
        path = Path(value)
        if not (path / "env.py").is_file():
            raise AppError(f"{self.label}: {path} is not an Alembic script directory (no env.py)")
        return path

    async def close(self) -> None:
        """Release what the app opened: the database's pools, the runtime's Redis client."""
        runtime = self.runtime
        if runtime is not None and runtime.redis is not None:
            await runtime.redis.aclose()
        await self.database.dispose()
