"""The login/dashboard load scenario of issue #13, replayed with Locust on 127.0.0.1.

Starts ``casebook serve`` (embedded mode, SQLite, seeded like ``make demo``) in a process
of its own and runs two bounded scenarios against it, each the same shape (ramp to 100
virtual users, hold, spike to 200, stop; ``--seconds`` in all):

* ``login every iteration``: each user signs in (argon2, ~20 ms of CPU), then reads the
  dashboard summary and the case list, waits 0.5-1.5 s and starts over — at 200 users
  logins arrive faster than two hashing threads can serve them, so they queue;
* ``login once``: each user signs in once, then reads and waits the same way.

Printed per scenario: requests, 5xx count (target: 0), 503s and 429s, p50/p95 of the
logins and of everything else (target: non-login p95 at most 50 ms while logins queue),
and the ratio of the two runs' non-login p95. The server runs with the default settings
except: rate limits raised out of the way (this measures queueing, not refusals) and a
password queue large enough for every user (``LOCKSTEP_PASSWORD_QUEUE=512``), so nothing
is refused; a full queue would be a 503 with ``Retry-After`` (tested in tests/).

    .venv/bin/python bench/load_login.py [--seconds 45] [--transactions 20000]
"""

from __future__ import annotations

# Locust patches the standard library (gevent) when imported: it comes first.
import gevent  # isort: skip
from locust import FastHttpUser, LoadTestShape, between, events, task  # isort: skip
from locust.env import Environment  # isort: skip

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

USERS = ["analyst@acme.test", "reviewer@acme.test", "admin@acme.test", "analyst@globex.test"]
PASSWORD = "demo"  # noqa: S105 - the seeded demo users' password
P95_TARGET_MS = 50.0


class Recorder:
    """Response times (ms) and statuses by kind (login or not), from Locust's events."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"login": [], "other": []}
        self.statuses: dict[int, int] = {}

    def __call__(self, name: str, response_time: float, response: Any, **_: Any) -> None:
        kind = "login" if name == "login" else "other"
        self.times[kind].append(response_time)
        status = int(getattr(response, "status_code", 0) or 0)
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _signed_in(user: FastHttpUser) -> bool:
    with user.client.post(
        "/api/v1/auth/token",
        data={"username": random.choice(USERS), "password": PASSWORD},
        name="login",
        catch_response=True,
    ) as response:
        if response.status_code != 200:
            response.failure(f"login: {response.status_code}")
            return False
        user.token = response.json()["access_token"]  # type: ignore[attr-defined]
        return True


def _read(user: FastHttpUser) -> None:
    headers = {"Authorization": f"Bearer {user.token}"}  # type: ignore[attr-defined]
    user.client.get("/api/v1/dashboard/summary", headers=headers, name="dashboard")
    user.client.get("/api/v1/cases?limit=50", headers=headers, name="cases")


class LoginEveryIteration(FastHttpUser):
    wait_time = between(0.5, 1.5)  # a person looking at the dashboard

    @task
    def iteration(self) -> None:
        if _signed_in(self):
            _read(self)


class LoginOnce(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        while not _signed_in(self):
            gevent.sleep(0.1)

    @task
    def iteration(self) -> None:
        _read(self)


class RampSpike(LoadTestShape):
    """Ramp to 100 users over the first third, hold, spike to 200 for the last third."""

    seconds = 45.0

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        third = self.seconds / 3
        if elapsed < third:
            return 100, 100 / third
        if elapsed < 2 * third:
            return 100, 100.0
        if elapsed < self.seconds:
            return 200, 100.0
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def casebook_server(data_dir: Path, transactions: int) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "LOCKSTEP_LOG_LEVEL": "WARNING",
        "LOCKSTEP_ACCESS_LOG": "false",
        "LOCKSTEP_RATE_LIMIT_API": "1000000/minute",
        "LOCKSTEP_RATE_LIMIT_LOGIN_ADDRESS": "1000000/minute",
        "LOCKSTEP_RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
        "LOCKSTEP_PASSWORD_QUEUE": "512",
    }
    command = [sys.executable, "-m", "casebook", "serve", "--port", str(port)]
    log = (data_dir / "serve.log").open("wb")
    server = subprocess.Popen(
        [*command, "--seed", str(transactions), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit((data_dir / "serve.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=1) as ready:  # noqa: S310
                    if ready.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("casebook serve did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def run(base: str, user_class: type[FastHttpUser], seconds: float) -> Recorder:
    recorder = Recorder()
    RampSpike.seconds = seconds
    env = Environment(user_classes=[user_class], shape_class=RampSpike(), host=base, events=events)
    env.events.request.add_listener(recorder)
    runner = env.create_local_runner()
    runner.start_shape()
    gevent.spawn_later(seconds + 10, runner.quit)  # bounded, whatever happens
    runner.greenlet.join()
    env.events.request.remove_listener(recorder)
    return recorder


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


def report(title: str, recorder: Recorder) -> float:
    statuses = recorder.statuses
    total = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"== {title}: {total} requests, statuses {dict(sorted(statuses.items()))}")
    print(
        f"   5xx: {server_errors} (target 0), 503: {statuses.get(503, 0)}, "
        f"429: {statuses.get(429, 0)}, no response: {statuses.get(0, 0)}"
    )
    for kind in ("login", "other"):
        times = recorder.times[kind]
        if times:
            print(
                f"   {kind:5}: {len(times):6} requests, p50 {percentile(times, 50):7.1f} ms, "
                f"p95 {percentile(times, 95):7.1f} ms"
            )
    other_p95 = percentile(recorder.times["other"], 95)
    verdict = "meets" if other_p95 <= P95_TARGET_MS and server_errors == 0 else "MISSES"
    print(f"   non-login p95 {other_p95:.1f} ms: {verdict} target {P95_TARGET_MS:.0f} ms, 0 x 5xx")
    return other_p95


def main(seconds: float, transactions: int) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; casebook serve on 127.0.0.1")
    with (
        tempfile.TemporaryDirectory() as data_dir,
        casebook_server(Path(data_dir), transactions) as base,
    ):
        every = report("login every iteration", run(base, LoginEveryIteration, seconds))
        once = report("login once", run(base, LoginOnce, seconds))
    print(f"non-login p95, logins queueing / logging in once: {every / max(once, 0.001):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--transactions", type=int, default=20_000)
    args = parser.parse_args()
    main(args.seconds, args.transactions)
