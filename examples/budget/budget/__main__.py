"""``python -m budget serve [--host H] [--port P] [--data-dir D]``: create the tables if
missing, then serve the API (and its job worker) with uvicorn. Settings come from the
``LOCKSTEP_*`` environment variables (``LOCKSTEP_DATABASE_URL`` for PostgreSQL); the default
is a SQLite file in the data directory."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvicorn

from budget.app import create_app, init_schema
from lockstep import Database, Settings, load_settings


async def prepare(settings: Settings) -> None:
    db = Database(settings)
    try:
        await init_schema(db)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m budget")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="create the tables if missing, then serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, default=Path("data/budget"))
    args = parser.parse_args(argv)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data_dir=args.data_dir)
    asyncio.run(prepare(settings))
    print(
        f"budget on http://{args.host}:{args.port}  (OpenAPI: /openapi.json; Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()
