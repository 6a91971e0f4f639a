"""Task registration, argument checks, backoff and cron: the pure parts, no database.

Requirement 9 (backoff with jitter and a cap, overridable per task) is covered here and in
``test_worker.py``; "bad input at enqueue time" here and in ``test_enqueue.py``.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest

from lockstep.exceptions import ConfigurationError
from lockstep.jobs import (
    Backoff,
    Cron,
    JobArgumentsError,
    JobContext,
    KeyLimits,
    Schedule,
    TaskRegistry,
    UnknownTaskError,
)

UTC = dt.UTC


def test_task_defaults_and_overrides() -> None:
    tasks = TaskRegistry(default_queue="work", max_attempts=3, backoff=Backoff(base=5))

    @tasks.task
    async def plain(x: int) -> int:
        return x

    @tasks.task(name="custom", queue="fast", priority=-5, max_attempts=9, timeout=2.5)
    def custom(ctx: JobContext, x: int) -> int:
        return x

    assert plain.name.endswith("test_task_defaults_and_overrides.<locals>.plain")
    assert (plain.queue, plain.max_attempts, plain.backoff.base) == ("work", 3, 5)
    assert plain.is_async
    assert not plain.wants_context
    assert (custom.queue, custom.priority, custom.max_attempts, custom.timeout) == (
        "fast",
        -5,
        9,
        2.5,
    )
    assert custom.wants_context
    assert not custom.is_async
    assert tasks.get("custom") is custom
    assert tasks.queues == ["fast", "work"]
    assert custom(None, 4) == 4  # a task still calls its function


def test_registration_errors() -> None:
    tasks = TaskRegistry()

    @tasks.task(name="dup")
    def first() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):
        tasks.task(name="dup")(first.fn)
    with pytest.raises(ConfigurationError, match="plain synchronous"):

        @tasks.task(name="p", process=True)
        async def bad_process() -> None: ...

    with pytest.raises(ConfigurationError, match="need a limit_key"):
        tasks.task(name="k", key_limits=KeyLimits(concurrency=1))(first.fn)


def test_unknown_task_name_is_a_clear_error() -> None:
    tasks = TaskRegistry()

    @tasks.task(name="known")
    def known() -> None: ...

    with pytest.raises(UnknownTaskError, match=r"no task named 'nope'.*known: known"):
        tasks.get("nope")
    other = TaskRegistry()
    with pytest.raises(UnknownTaskError):
        other.resolve(known)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"when": dt.datetime(2026, 1, 1, tzinfo=UTC)}, "datetime.*isoformat"),
        ({"ids": (1, 2)}, "tuple.*pass a list"),
        ({"ids": {1, 2}}, "set"),
        ({"x": object()}, "object"),
        ({"x": float("nan")}, "nan"),
        ({"nested": {1: "a"}}, "non-string key"),
        ({"big": 2**70}, "too large"),
        ({"x": 1, "unexpected": 2}, "unexpected"),
        ({}, "missing a required argument"),
    ],
)
def test_unserializable_or_misfitting_args_are_refused(args: dict, message: str) -> None:
    tasks = TaskRegistry()

    @tasks.task(name="t")
    def handler(x: object) -> None: ...

    with pytest.raises(JobArgumentsError, match=message):
        handler.encode_args(args)


def test_args_round_trip_as_json() -> None:
    tasks = TaskRegistry()

    @tasks.task(name="t")
    def handler(ctx: JobContext, items: list[object], meta: dict[str, object]) -> None: ...

    text = handler.encode_args({"items": [1, "a", None, 2.5, True], "meta": {"k": [1]}})
    assert text.startswith("{")
    with pytest.raises(JobArgumentsError, match="mapping"):
        handler.encode_args([1, 2])  # type: ignore[arg-type]


def test_unique_and_limit_keys_from_templates_or_callables() -> None:
    tasks = TaskRegistry()

    @tasks.task(unique="report:{report_id}", limit_key=lambda a: f"org:{a['org']}")
    def render(report_id: int, org: int) -> None: ...

    assert render.unique_key_for({"report_id": 7, "org": 1}) == "report:7"
    assert render.limit_key_for({"report_id": 7, "org": 1}) == "org:1"
    with pytest.raises(JobArgumentsError, match="template"):
        render.unique_key_for({"org": 1})


def test_backoff_is_exponential_jittered_and_capped() -> None:
    """Requirement 9: exponential backoff with jitter and a cap."""
    backoff = Backoff(base=1.0, factor=2.0, cap=60.0, jitter=0.25)
    rng = random.Random(42)
    for attempt in range(1, 30):
        raw = min(2.0 ** (attempt - 1), 60.0)
        for _ in range(20):
            delay = backoff.delay(attempt, rng)
            assert raw * 0.75 - 1e-9 <= delay <= min(raw * 1.25, 60.0) + 1e-9
            assert delay <= 60.0
    # Jitter spreads: not every delay of one attempt is the same.
    assert len({round(backoff.delay(3, rng), 6) for _ in range(10)}) > 1
    exact = Backoff(base=3.0, factor=3.0, cap=100.0, jitter=0.0)
    assert [exact.delay(n) for n in (1, 2, 3, 4, 5)] == [3.0, 9.0, 27.0, 81.0, 100.0]
    assert Backoff(base=2.0, cap=10.0, jitter=0).delay(10_000) == 10.0  # no overflow
    with pytest.raises(ConfigurationError):
        Backoff(jitter=2.0)


def test_cron_parsing_and_next_tick() -> None:
    every_5 = Cron.parse("*/5 * * * *")
    t = dt.datetime(2026, 3, 1, 10, 2, 30, tzinfo=UTC)
    assert every_5.next_after(t) == dt.datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert every_5.next_after(dt.datetime(2026, 3, 1, 10, 5, tzinfo=UTC)) == dt.datetime(
        2026, 3, 1, 10, 10, tzinfo=UTC
    )
    weekdays_9 = Cron.parse("0 9 * * mon-fri")
    saturday = dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert weekdays_9.next_after(saturday) == dt.datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    new_year = Cron.parse("@yearly")
    assert new_year.next_after(t) == dt.datetime(2027, 1, 1, tzinfo=UTC)
    # Both day fields restricted: either matches (cron's rule).
    either = Cron.parse("0 0 13 * fri")
    assert either.next_after(dt.datetime(2026, 3, 1, tzinfo=UTC)) == dt.datetime(
        2026, 3, 6, tzinfo=UTC
    )
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *", "5-1 * * * *", "x * * * *"):
        with pytest.raises(ConfigurationError, match="cron expression"):
            Cron.parse(bad)
    with pytest.raises(ConfigurationError, match="never fires"):
        Cron.parse("0 0 30 2 *").next_after(t)


def test_schedule_catch_up_policies_choose_missed_ticks() -> None:
    """Requirement 7 (pure part): catch-up all / latest / none, and the next tick."""
    now = dt.datetime(2026, 3, 1, 10, 0, 30, tzinfo=UTC)
    last = dt.datetime(2026, 3, 1, 9, 55, tzinfo=UTC)
    minutes = [dt.datetime(2026, 3, 1, 9, m, tzinfo=UTC) for m in range(56, 60)]
    missed = [*minutes, dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)]
    upcoming = dt.datetime(2026, 3, 1, 10, 1, tzinfo=UTC)

    def schedule(policy: str) -> Schedule:
        return Schedule(name="s", task="t", cron=Cron.parse("* * * * *"), catch_up=policy)  # type: ignore[arg-type]

    assert schedule("all").due_ticks(last, now) == [*missed, upcoming]
    assert schedule("latest").due_ticks(last, now) == [missed[-1], upcoming]
    assert schedule("none").due_ticks(last, now) == [upcoming]
    assert schedule("all").due_ticks(None, now) == [upcoming]  # first sight: no catch-up
    assert schedule("all").due_ticks(upcoming, now) == []  # next tick already waiting
    capped = Schedule(name="c", task="t", every=60, catch_up="all", max_catch_up=2)
    assert capped.due_ticks(last, now) == [*missed[-2:], upcoming]


def test_interval_schedules_are_epoch_aligned() -> None:
    every = Schedule(name="e", task="t", every=dt.timedelta(seconds=90).total_seconds())
    t = dt.datetime(2026, 3, 1, 0, 0, 10, tzinfo=UTC)
    first = every.next_after(t)
    assert first > t
    assert first.timestamp() % 90 == 0
    assert every.next_after(first).timestamp() - first.timestamp() == 90
    assert every.key(first) == f"e@{first.isoformat()}"
    with pytest.raises(ConfigurationError):
        Schedule(name="bad", task="t")
