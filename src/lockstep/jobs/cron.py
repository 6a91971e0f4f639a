"""Cron expressions (five fields, UTC) and the one question the scheduler asks of them: the
first tick strictly after a given time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lockstep.exceptions import ConfigurationError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {name: n for n, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_LIMIT = dt.timedelta(days=366 * 5)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression: ``minute hour day-of-month month day-of-week`` in UTC.

    Fields take ``*``, numbers, ``a-b`` ranges, ``/step`` and comma lists; months and days
    also take names (``jan``, ``mon``); day of week 0 and 7 are Sunday. As in cron, when both
    day fields are restricted a day matching either one matches. ``@hourly``, ``@daily``,
    ``@weekly``, ``@monthly`` and ``@yearly`` are accepted.
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse ``expression``; raises :class:`ConfigurationError` saying which field is bad."""
        text = _MACROS.get(expression.strip().lower(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ConfigurationError(
                f"cron expression {expression!r} must have 5 fields "
                "(minute hour day-of-month month day-of-week)"
            )
        sets = [
            _parse_field(part, name, low, high, names, expression)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(
            expression=expression,
            minutes=sets[0],
            hours=sets[1],
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            days_restricted=parts[2] != "*",
            weekdays_restricted=parts[4] != "*",
        )

    def _day_matches(self, day: dt.datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC.

        Raises :class:`ConfigurationError` for an expression that never fires (``0 0 30 2 *``).
        """
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        start = moment.astimezone(dt.UTC)
        t = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = start + _SEARCH_LIMIT
        while t <= limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
                continue
            return t
        raise ConfigurationError(f"cron expression {self.expression!r} never fires")


def _parse_field(
    part: str, name: str, low: int, high: int, names: dict[str, int], expression: str
) -> frozenset[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.strip().lower()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise ConfigurationError(f"cron expression {expression!r}: bad {name} {token!r}")
        value = int(token)
        if not low <= value <= high:
            raise ConfigurationError(
                f"cron expression {expression!r}: {name} {value} is outside {low}-{high}"
            )
        return value

    for item in part.split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ConfigurationError(
                    f"cron expression {expression!r}: bad step {step_text!r} in {name}"
                )
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise ConfigurationError(
                    f"cron expression {expression!r}: {name} range {body!r} is backwards"
                )
        else:
            first = number(body)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)
