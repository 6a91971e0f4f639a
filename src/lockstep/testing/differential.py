"""The differential cache harness: every cached answer must equal the uncached one.

Any app built on lockstep can run it in its own tests::

    report = await check_cached_routes(
        app,
        callers=[Caller("ada", {"Authorization": "Bearer ..."}), ...],
        values=pools,      # async () -> {"case_id": [1, 2, 999999], "month": [...], ...}
        writes=[rename_a_case, add_a_transaction, ...],   # async (rng) -> None
        steps=300,
        seed=1,
    )
    report.raise_for_mismatches()

For every ``@cached`` route of ``app`` it generates requests — path and query parameters
from the route's OpenAPI description, preferring the app's real values (``values`` by
parameter name), as each of several callers (principals of different tenants), with and
without validators (the caller's own last ETag for the URL, another caller's, ``*``, a made-up
one) — interleaved with the app's random writes. Each request is made twice at the same
moment (no write in between): once with caching off (:func:`caching_disabled`) and once as
usual. The cached answer must have the uncached answer's status and body; a 304 is correct
only where the uncached answer is a 2xx whose ETag matches the ``If-None-Match`` sent.

The harness drives the app in-process through ``httpx.ASGITransport`` (the switch that turns
caching off is a context variable of this task), one request at a time, with a seeded
``random.Random``: a failing run repeats exactly with the same seed, and the report lists
the steps that led to each mismatch.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import fastapi.routing
import httpx
from starlette.routing import BaseRoute

from lockstep.http.caching import RouteCache, caching_disabled, etag_matches

__all__ = [
    "CachedRoute",
    "Caller",
    "DifferentialReport",
    "Mismatch",
    "cached_routes",
    "caching_disabled",
    "check_cached_routes",
]

Write = Callable[[random.Random], Awaitable[object]]
Values = Callable[[], Awaitable[Mapping[str, Sequence[Any]]]]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sends a request: a name for the report and the headers that authenticate it."""

    name: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    location: str  # "path" or "query"
    required: bool
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CachedRoute:
    """A GET route whose endpoint is ``@cached``, with its parameters as OpenAPI describes them."""

    path: str
    name: str
    parameters: tuple[Parameter, ...]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A cached answer that differs from the uncached one at the same moment."""

    step: int
    route: str
    caller: str
    url: str
    validator: str | None
    uncached: tuple[int, bytes, str | None]
    cached: tuple[int, bytes, str | None]
    history: tuple[str, ...]

    def __str__(self) -> str:
        def show(answer: tuple[int, bytes, str | None]) -> str:
            status, body, etag = answer
            text = body[:300].decode("utf-8", "replace")
            return f"{status} etag={etag} body={text!r}"

        recent = "\n      ".join(self.history[-8:])
        return (
            f"step {self.step}: GET {self.url} as {self.caller} "
            f"(If-None-Match: {self.validator})\n"
            f"    uncached: {show(self.uncached)}\n    cached:   {show(self.cached)}\n"
            f"    steps before:\n      {recent}"
        )


@dataclass
class DifferentialReport:
    """What a run did and every mismatch it found."""

    routes: tuple[CachedRoute, ...]
    reads: int = 0
    writes: int = 0
    not_modified: int = 0
    hits: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def raise_for_mismatches(self) -> None:
        """AssertionError listing, per route, the first wrong 304 and the first wrong body."""
        if self.mismatches:
            first: dict[tuple[str, bool], Mismatch] = {}
            for mismatch in self.mismatches:
                first.setdefault((mismatch.route, mismatch.cached[0] == 304), mismatch)
            shown = "\n\n".join(str(m) for m in first.values())
            raise AssertionError(
                f"{len(self.mismatches)} cached answer(s) differ from the uncached ones "
                f"({self.reads} reads, {self.writes} writes over {len(self.routes)} routes):\n\n"
                f"{shown}"
            )


def cached_routes(app: Any) -> tuple[CachedRoute, ...]:
    """The ``@cached`` GET routes of a FastAPI ``app``, described by its OpenAPI document."""
    document = app.openapi()
    found = []
    for route in _routes(app.routes):
        endpoint = getattr(route, "endpoint", None)
        spec = getattr(endpoint, RouteCache.MARKER, None)
        path = getattr(route, "path_format", None)
        if not isinstance(spec, RouteCache) or path is None:
            continue
        operation = document.get("paths", {}).get(path, {}).get("get")
        if operation is None:
            continue  # not described (include_in_schema=False): nothing to generate from
        parameters = tuple(
            Parameter(
                p["name"], p["in"], bool(p.get("required")), _resolve(p.get("schema", {}), document)
            )
            for p in operation.get("parameters", ())
            if p.get("in") in ("path", "query")
        )
        found.append(CachedRoute(path, spec.name, parameters))
    return tuple(found)


async def check_cached_routes(
    app: Any,
    *,
    callers: Sequence[Caller],
    values: Values,
    writes: Sequence[Write],
    steps: int = 200,
    seed: int = 0,
    write_ratio: float = 0.25,
    base_url: str = "http://differential.test",
) -> DifferentialReport:
    """Run ``steps`` steps against every cached route of ``app``: a write with probability
    ``write_ratio``, else a burst of one to four reads of one route by one caller, each
    checked; see the module docstring."""
    routes = cached_routes(app)
    if not routes:
        raise ValueError("the app has no @cached GET routes described in its OpenAPI document")
    if not callers:
        raise ValueError("give at least one caller")
    rng = random.Random(seed)
    run = _Run(rng, DifferentialReport(routes), callers)
    pools = await values()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        for step in range(steps):
            if writes and rng.random() < write_ratio:
                write = rng.choice(writes)
                outcome = await write(rng)
                run.history.append(
                    f"{step}: write {getattr(write, '__name__', write)} -> {outcome}"
                )
                run.report.writes += 1
                pools = await values()
                continue
            # A burst of reads of one route by one caller, each a neighbour of the one before
            # (one parameter changed): that is how a key missing a parameter shows.
            route = rng.choice(routes)
            caller = rng.choice(callers)
            chosen = None
            for _ in range(rng.randint(1, 4)):
                url, chosen = _url(route, pools, rng, chosen)
                await run.read(client, step, route, caller, url)
    return run.report


class _Run:
    """The state of one harness run: what each caller was given, and the steps so far."""

    def __init__(
        self, rng: random.Random, report: DifferentialReport, callers: Sequence[Caller]
    ) -> None:
        self.rng = rng
        self.report = report
        self.callers = callers
        self.etags: dict[tuple[str, str], str] = {}  # (caller, url) -> last ETag it was given
        self.history: list[str] = []

    async def read(
        self, client: httpx.AsyncClient, step: int, route: CachedRoute, caller: Caller, url: str
    ) -> None:
        """Ask for ``url`` with caching off, then as usual (maybe with a validator); record
        a mismatch if the cached answer is not what the route answers."""
        validator = _validator(self.rng, caller, url, self.callers, self.etags)
        headers = dict(caller.headers)
        with caching_disabled():
            plain = await client.get(url, headers=headers)
        if validator is not None:
            headers["If-None-Match"] = validator
        answer = await client.get(url, headers=headers)
        report = self.report
        report.reads += 1
        self.history.append(
            f"{step}: GET {url} as {caller.name} inm={validator} -> {answer.status_code} "
            f"{answer.headers.get('x-cache', '')}"
        )
        if answer.headers.get("x-cache") == "HIT":
            report.hits += 1
        if answer.status_code == 304:
            report.not_modified += 1
        uncached = (plain.status_code, _body(plain), plain.headers.get("etag"))
        cached = (answer.status_code, _body(answer), answer.headers.get("etag"))
        if not _agrees(uncached, cached, validator):
            report.mismatches.append(
                Mismatch(
                    step,
                    route.path,
                    caller.name,
                    url,
                    validator,
                    uncached,
                    cached,
                    tuple(self.history[-8:]),
                )
            )
        etag = answer.headers.get("etag")
        if etag and 200 <= answer.status_code < 300:
            self.etags[(caller.name, url)] = etag


def _resolve(schema: Any, document: Mapping[str, Any]) -> Any:
    """``schema`` with every local ``$ref`` replaced by what it points to."""
    if isinstance(schema, list):
        return [_resolve(item, document) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = document
        for part in ref[2:].split("/"):
            target = target.get(part, {})
        return _resolve(target, document)
    return {key: _resolve(value, document) for key, value in schema.items()}


def _routes(routes: Sequence[BaseRoute]) -> Iterator[Any]:
    """Every route with its full path: FastAPI (0.16x) keeps included routers as branches
    whose effective routes (prefix applied) ``iter_route_contexts`` yields."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    yield from iterate(routes) if iterate is not None else routes


def _body(response: httpx.Response) -> bytes:
    """The body without the one value that differs on every request: its request id."""
    request_id = response.headers.get("x-request-id")
    if request_id:
        return response.content.replace(request_id.encode("latin-1"), b"<request-id>")
    return response.content


def _agrees(
    uncached: tuple[int, bytes, str | None],
    cached: tuple[int, bytes, str | None],
    validator: str | None,
) -> bool:
    status, body, etag = uncached
    if cached[0] == 304:
        # Correct only if the uncached answer is a 2xx whose current ETag the client holds.
        return (
            validator is not None
            and 200 <= status < 300
            and etag is not None
            and etag_matches(validator, etag.strip('"'))
            and cached[2] == etag
        )
    return cached[0] == status and cached[1] == body


def _validator(
    rng: random.Random,
    caller: Caller,
    url: str,
    callers: Sequence[Caller],
    etags: Mapping[tuple[str, str], str],
) -> str | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.75:
        return etags.get((caller.name, url))
    if roll < 0.88:
        other = rng.choice(callers)
        return etags.get((other.name, url))
    if roll < 0.94:
        return "*"
    return f'"{rng.getrandbits(64):016x}"'


def _url(
    route: CachedRoute,
    pools: Mapping[str, Sequence[Any]],
    rng: random.Random,
    previous: dict[str, tuple[str, str]] | None,
) -> tuple[str, dict[str, tuple[str, str]]]:
    """A URL for ``route`` and the parameters it carries: fresh, or ``previous`` with one
    parameter changed or dropped (a path parameter half the time: the ones a key most easily
    forgets)."""
    if previous is not None and route.parameters:
        chosen = dict(previous)
        in_path = [p for p in route.parameters if p.location == "path"]
        parameter = rng.choice(in_path if in_path and rng.random() < 0.5 else route.parameters)
        present = parameter.name in chosen
        if (
            parameter.location == "query"
            and not parameter.required
            and present
            and rng.random() < 0.5
        ):
            del chosen[parameter.name]
        else:
            chosen[parameter.name] = (parameter.location, _value(parameter, pools, rng))
    else:
        chosen = {}
        for parameter in route.parameters:
            if parameter.location == "path" or parameter.required or rng.random() < 0.25:
                chosen[parameter.name] = (parameter.location, _value(parameter, pools, rng))
    path = route.path
    query: list[tuple[str, str | int | float | bool | None]] = []
    for parameter in route.parameters:  # in declared order, as a client sends them
        if parameter.name not in chosen:
            continue
        location, value = chosen[parameter.name]
        if location == "path":
            path = path.replace("{" + parameter.name + "}", quote(value, safe=""))
        else:
            query.append((parameter.name, value))
    if not query:
        return path, chosen
    if rng.random() < 0.2:
        rng.shuffle(query)  # the same query in another order is the same representation
    return f"{path}?{httpx.QueryParams(query)}", chosen


def _value(parameter: Parameter, pools: Mapping[str, Sequence[Any]], rng: random.Random) -> str:
    pool = pools.get(parameter.name)
    if pool:
        return _text(rng.choice(list(pool)))
    return _text(_from_schema(parameter.schema, rng))


def _from_schema(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A plausible value for a JSON schema: enum members, small integers, dates, booleans."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        usable = [o for o in options if o.get("type") != "null"]
        return _from_schema(rng.choice(usable) if usable else {}, rng)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low = int(schema.get("minimum", 1))
        high = int(schema.get("maximum", low + 50))
        return rng.randint(low, min(high, low + 50))
    if kind == "number":
        return rng.choice([0, 1, 10, 100, 1000])
    if kind == "boolean":
        return rng.random() < 0.5
    if schema.get("format") == "date":
        return dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(-400, 400))
    return rng.choice(["a", "wire", "x y", "zz"])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
