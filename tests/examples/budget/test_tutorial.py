"""docs/tutorial.md cannot drift from the example it teaches.

* Every ``python`` block is quoted, line for line, from ``examples/budget`` or its tests.
* Every file path it names exists, and every code name it puts in backticks is defined in
  the example, its tests or lockstep's public modules.
* Every ``console`` block runs, in order, against a fresh ``make budget`` on 127.0.0.1
  (the port and data directory swapped for the test's), and prints what the tutorial says
  it prints (``…`` stands for anything within a line; a line of just ``…`` for any lines).

Plus what the tutorial tells but cannot show in a finite shell block: a commit reaching an
SSE stream that stays open.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from lockstep.testing import free_port

from .conftest import EXAMPLE

ROOT = EXAMPLE.parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
TESTS = ROOT / "tests" / "examples" / "budget"
QUOTABLE = sorted([*EXAMPLE.rglob("*.py"), *TESTS.rglob("*.py")])
MODULES = (
    "lockstep",
    "lockstep.testing",
    "lockstep.testing.differential",
    "lockstep.realtime",
    "lockstep.offline",
    "sqlalchemy.ext.asyncio",
)
SERVER = "127.0.0.1:8000"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(language: str) -> list[str]:
    text = TUTORIAL.read_text()
    return [body for lang, body in FENCE.findall(text) if lang == language]


def prose() -> str:
    return FENCE.sub("", TUTORIAL.read_text())


# -- quotes, paths, names -----------------------------------------------------------------


def quoted_in(lines: list[str], quote: list[str]) -> bool:
    for start, line in enumerate(lines):
        if not line.endswith(quote[0]) or line[: len(line) - len(quote[0])].strip():
            continue
        indent = line[: len(line) - len(quote[0])]
        window = lines[start : start + len(quote)]
        if len(window) == len(quote) and all(
            (got == indent + want) if want else not got.strip()
            for got, want in zip(window, quote, strict=True)
        ):
            return True
    return False


def test_every_python_block_is_quoted_from_the_example() -> None:
    sources = {path: path.read_text().splitlines() for path in QUOTABLE}
    found = blocks("python")
    assert len(found) >= 12
    for block in found:
        quote = block.rstrip("\n").splitlines()
        where = [p for p, lines in sources.items() if quoted_in(lines, quote)]
        assert where, f"not in examples/budget or its tests:\n{block}"


def test_every_path_named_exists() -> None:
    text = TUTORIAL.read_text()
    named = set(re.findall(r"`((?:examples|tests|docs|src|casebook)/[\w./-]+)`", text))
    linked = {
        str((TUTORIAL.parent / target).resolve().relative_to(ROOT))
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    }
    assert "examples/budget/budget/app.py" in named
    for path in sorted(named | linked):
        assert (ROOT / path).exists(), path


def resolves(parts: list[str]) -> bool:
    """``parts`` name a module's attribute (``lockstep.testing.PostgresServer``), or an
    attribute of one of :data:`MODULES` (``Database.writer``)."""
    candidates = [(".".join(parts[:n]), parts[n:]) for n in range(len(parts), 0, -1)]
    candidates += [(module, parts) for module in MODULES]
    for module, rest in candidates:
        try:
            target: object = importlib.import_module(module)
        except ImportError:
            continue
        for part in rest:
            target = getattr(target, part, None)
            if target is None:
                break
        else:
            return True
    return False


def defined(name: str, sources: str) -> bool:
    """``name`` (``a.b.c``) is defined by lockstep (or the libraries it names), or
    is a name in the example's code."""
    parts = name.split(".")
    return resolves(parts) or re.search(rf"\b{re.escape(parts[-1])}\b", sources) is not None


def test_every_name_in_backticks_is_defined() -> None:
    sources = "\n".join(p.read_text() for p in QUOTABLE)
    calls = re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\([^`]*\))?`", prose())
    names = [n for n in calls if n]
    assert {"Database.writer", "AGGREGATES.repair", "Lockstep"} <= set(names)
    unknown = sorted({n for n in names if not defined(n, sources)})
    assert unknown == []


# -- the shell session --------------------------------------------------------------------


@dataclass
class Command:
    script: str
    expected: list[str]


def commands(block: str) -> list[Command]:
    """``$ `` starts a command; it goes on while a line ends in ``\\``, a quote is open or a
    here-document has not ended; the lines up to the next ``$ `` are its output."""
    out: list[Command] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"output before a command: {lines[i]!r}"
        script = [lines[i][2:]]
        heredoc = re.search(r"<<'(\w+)'", script[0])
        i += 1
        while i < len(lines) and (
            (heredoc and script[-1] != heredoc.group(1))
            or script[-1].endswith("\\")
            or "\n".join(script).count("'") % 2
        ):
            script.append(lines[i])
            i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        out.append(Command("\n".join(script), expected))
    return out


def matches(got: list[str], want: list[str]) -> bool:
    if not want:
        return not got
    if want[0] == "…":
        return any(matches(got[n:], want[1:]) for n in range(len(got) + 1))
    pattern = ".*".join(re.escape(part) for part in want[0].split("…"))
    return bool(got) and re.fullmatch(pattern, got[0]) is not None and matches(got[1:], want[1:])


def lines_of(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r", "").splitlines() if line.strip()]


@dataclass
class Served:
    port: int
    data_dir: Path
    startup: list[str]  # what ``make budget`` printed until the server was up

    def local(self, text: str) -> str:
        return text.replace(SERVER, f"127.0.0.1:{self.port}").replace(
            "--port 8000", f"--port {self.port}"
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``make budget`` on a free port, as a user starts it (the tutorial's first command),
    stopped with SIGINT like Ctrl-C."""
    port = free_port()
    (make,) = [
        c for block in blocks("console") for c in commands(block) if "make budget" in c.script
    ]
    stderr = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        ["bash", "-c", f"{make.script} PORT={port} DATA_DIR={tmp_path}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    startup = []
    try:
        for line in process.stdout:  # ends if the server dies: no wait on a timer
            startup.append(line.rstrip())
            if line.startswith("budget on "):
                break
        # Its logs go on to stdout: keep reading them, or a full pipe stops the server.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        # The line is printed before uvicorn binds; /health answering means it is serving.
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                os.sched_yield()
        yield Served(port, tmp_path / "budget", startup)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        stderr.close()


class Shell:
    """One bash, as in a terminal: variables set by a command are there for the next."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["bash"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.marker = f"--- done {os.getpid()} ---"

    def run(self, script: str) -> list[str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        # Commands read nothing of ours: their stdin is /dev/null (a here-document still
        # feeds its own command).
        # curl's answers end without a newline: the marker goes on a line of its own.
        self.process.stdin.write(f"{{ {script}\n}} </dev/null\necho; echo '{self.marker}'\n")
        self.process.stdin.flush()
        out = []
        for line in self.process.stdout:  # the marker comes after the command has ended
            if line.rstrip("\n") == self.marker:
                return lines_of("\n".join(out))
            out.append(line.rstrip("\n"))
        raise AssertionError(f"the shell ended during:\n{script}\n" + "\n".join(out))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def test_the_tutorial_session_prints_what_it_says(served: Served) -> None:
    shell, ran = Shell(), 0
    try:
        for block in blocks("console"):
            for command in commands(block):
                want = lines_of(served.local("\n".join(command.expected)))
                if "make budget" in command.script:
                    want = [w.replace("data/budget", f"{served.data_dir}") for w in want]
                    assert matches(served.startup, want), (served.startup, want)
                    continue
                script = served.local(command.script)
                print("$", script, flush=True)  # shown if the test fails or times out
                got = shell.run(script)
                assert matches(got, want), f"$ {script}\n--- got:\n" + "\n".join(got)
                ran += 1
    finally:
        shell.close()
    assert ran >= 15


def test_a_commit_reaches_an_open_sse_stream(served: Served) -> None:
    base = f"http://127.0.0.1:{served.port}"
    household = httpx.post(f"{base}/households", json={"name": "Roe", "members": ["Cy"]}).json()
    channel = f"household:{household['id']}"
    body = orjson.dumps({"subs": {channel: {}}})
    with httpx.stream("POST", f"{base}/connection/uni_sse", content=body, timeout=30) as stream:
        events = (orjson.loads(x[6:]) for x in stream.iter_lines() if x.startswith("data: "))
        connected = next(events)
        assert connected["connect"]["subs"][channel]["recoverable"] is True
        row = {"member_id": household["members"][0]["id"], "posted_on": "2026-05-01",
               "category": "bike", "expense_type": "irregular", "amount_cents": 35_000}  # fmt: skip
        added = httpx.post(f"{base}/households/{household['id']}/entries", json=[row])
        assert added.status_code == 201
        pushed = next(e for e in events if e.get("channel") == channel)
    assert pushed["pub"]["offset"] == 1
    assert pushed["pub"]["data"]["entry"]["category"] == "bike"
