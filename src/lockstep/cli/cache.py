"""``lockstep cache stats``: what the exact cache holds and how it is doing.

Two sources, either or both:

* **Redis** (scale-out mode, from the app's ``lockstep`` runtime): the stamp generation
  (part of every key and ETag), the clock and invalidation sequence, and the keys by kind,
  counted with ``SCAN`` (fine here, by an operator; never on a request path), as
  :meth:`~lockstep.cache.RedisStampStore.stats` reports them.
* **A running server** (``--url``): its ``/metrics`` cache counters (hits per tier,
  misses, fills stored or rejected, invalidations, backend errors). In embedded mode the
  cache lives inside each server process, so this is the only way to see it.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from lockstep.cli.app import OperatedApp
from lockstep.cli.console import AsJson, DataDir, Failure, emit_json, err, guarded, out, run

cache_app = typer.Typer(
    no_args_is_help=True, help="The exact cache: Redis contents, server counters."
)

KINDS = {
    "st": "version stamps",
    "v": "cached values",
    "applied": "change sets marked invalidated (kept a day, so the relay never repeats one)",
    "clock": "the stamp clock: generation, counter, invalidation sequence, server run id",
    "lease": "leases (the invalidation relay's)",
    "state": "saved state (the relay's cursor)",
}


async def _redis(app: OperatedApp) -> dict[str, Any]:
    runtime = app.runtime
    if runtime is None:
        raise Failure(
            f"{app.label} has no `lockstep` runtime to find its cache by: read a running "
            "server's counters with --url http://HOST:PORT",
            2,
        )
    relay = getattr(runtime.backend, "relay", None)
    if relay is None:
        raise Failure(
            "embedded mode (no LOCKSTEP_REDIS_URL): the cache lives inside each server "
            "process; read a server's counters with --url http://HOST:PORT"
        )
    columns = (SpinnerColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("counting keys (SCAN)")

        def progress(seen: int, total: int) -> None:
            bar.update(task, description=f"counting keys (SCAN): ~{seen} of {total}")

        stats: dict[str, Any] = await relay.stamps.stats(progress)
    return stats


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _server(url: str) -> dict[str, Any]:
    target = url.rstrip("/") + "/metrics"
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(target)
    except httpx.HTTPError as exc:
        raise Failure(f"{target}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise Failure(f"{target} answered {response.status_code}")
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.text):
        if not family.name.startswith("lockstep_cache_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            label = next(iter(sample.labels.values()), "")
            samples.setdefault(sample.name, {})
            samples[sample.name][label] = samples[sample.name].get(label, 0.0) + sample.value
    if not samples:
        raise Failure(f"{target} has no lockstep cache metrics (is it a lockstep app?)")
    lookups = {k: int(v) for k, v in samples.get("lockstep_cache_lookups_total", {}).items()}
    hits = lookups.get("hit_l1", 0) + lookups.get("hit_l2", 0)
    served = hits + lookups.get("miss", 0)
    return {
        "url": url,
        "lookups": lookups,
        "hit_ratio": round(hits / served, 4) if served else None,
        "fills": {k: int(v) for k, v in samples.get("lockstep_cache_fills_total", {}).items()},
        "invalidations": int(sum(samples.get("lockstep_cache_invalidations_total", {}).values())),
        "errors": {k: int(v) for k, v in samples.get("lockstep_cache_errors_total", {}).items()},
        "invalidation_lag": {
            "count": int(
                sum(samples.get("lockstep_cache_invalidation_lag_seconds_count", {}).values())
            ),
            "sum_seconds": sum(
                samples.get("lockstep_cache_invalidation_lag_seconds_sum", {}).values()
            ),
        },
    }


def _show_redis(stats: dict[str, Any]) -> None:
    out.print(
        f"Redis namespace {stats['namespace']}: generation {stats['generation'] or '(none yet)'}, "
        f"clock {stats['clock']}, invalidation seq {stats['seq']}",
        highlight=False,
    )
    table = Table("kind", "keys", "what")
    for kind, count in stats["keys"].items():
        table.add_row(kind, str(count), KINDS.get(kind, ""))
    out.print(table)


def _show_server(stats: dict[str, Any]) -> None:
    ratio = stats["hit_ratio"]
    out.print(
        f"{stats['url']}: hit ratio {'-' if ratio is None else f'{ratio:.1%}'}, "
        f"{stats['invalidations']} invalidations",
        highlight=False,
    )
    table = Table("counter", "value")
    for name, value in stats["lookups"].items():
        table.add_row(f"lookups {name}", str(value))
    for name, value in stats["fills"].items():
        table.add_row(f"fills {name}", str(value))
    for name, value in stats["errors"].items():
        table.add_row(f"errors {name}", str(value))
    lag = stats["invalidation_lag"]
    if lag["count"]:
        table.add_row(
            "invalidation lag, mean", f"{lag['sum_seconds'] / lag['count'] * 1000:.2f} ms"
        )
    out.print(table)


@cache_app.command("stats")
def stats_command(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="A running server's base URL: read its /metrics instead of Redis."),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Generation, sequence and keys by kind from Redis; or (--url) a server's counters."""
    if url is not None:
        stats = guarded(lambda: _server(url))
        if as_json:
            emit_json(stats)
        else:
            _show_server(stats)
        return
    stats = run(ctx, data_dir, _redis)
    if as_json:
        emit_json(stats)
    else:
        _show_redis(stats)
