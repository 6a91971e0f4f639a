"""``Shape``: a lockstep (or Electric) shape followed from Python, rows kept by key.

    shape = Shape(client, "cases", where="status = $1", params=["open"])
    async for rows in shape.follow():     # after each up-to-date: {key: row}
        render(rows)

It follows the Electric Shape HTTP API as the official clients do: the paged snapshot from
``offset=-1``, then live long polls with the handle, offset and cursor the server gives; a
409 ``must-refetch`` clears the rows and starts over with the new handle. Values stay
PostgreSQL text, as sent (the ``electric-schema`` header is in ``schema``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from lockstep.client.client import Client


class Shape:
    """One shape of ``table`` seen through ``client``."""

    def __init__(
        self,
        client: Client,
        table: str,
        *,
        where: str | None = None,
        params: Sequence[str] = (),
        columns: Sequence[str] | None = None,
        path: str = "/v1/shape",
    ) -> None:
        self.client = client
        self.path = path
        self.query: dict[str, str] = {"table": table}
        if where is not None:
            self.query["where"] = where
        for number, value in enumerate(params, start=1):
            self.query[f"params[{number}]"] = value
        if columns is not None:
            self.query["columns"] = ",".join(columns)
        self.rows: dict[str, dict[str, Any]] = {}
        self.schema: dict[str, Any] = {}
        self.offset, self.handle, self.cursor = "-1", "", ""
        self.up_to_date = False
        self.refetches = 0

    async def poll(self) -> bool:
        """One request; True when the rows are up to date after it."""
        query = dict(self.query, offset=self.offset)
        if self.handle:
            query["handle"] = self.handle
        if self.up_to_date:
            query["live"], query["cursor"] = "true", self.cursor
        response = await self.client.get(self.path, params=query, cache=False)
        if response.status_code == 409:
            self.rows, self.offset, self.up_to_date = {}, "-1", False
            self.handle = response.headers.get("electric-handle", "")
            self.refetches += 1
            return False
        response.raise_for_status()
        self.offset = response.headers["electric-offset"]
        self.handle = response.headers["electric-handle"]
        self.cursor = response.headers.get("electric-cursor", self.cursor)
        if "electric-schema" in response.headers:
            self.schema = json.loads(response.headers["electric-schema"])
        up_to_date = False
        for message in response.json():
            headers = message.get("headers", {})
            if "key" not in message:
                up_to_date |= headers.get("control") == "up-to-date"
                continue
            if headers.get("operation") == "delete":
                self.rows.pop(message["key"], None)
            else:
                self.rows[message["key"]] = {
                    **self.rows.get(message["key"], {}),
                    **message["value"],
                }
        self.up_to_date = self.up_to_date or up_to_date
        return up_to_date

    async def follow(self) -> AsyncIterator[dict[str, dict[str, Any]]]:
        """The rows after every up-to-date, forever (cancel the loop to stop)."""
        while True:
            if await self.poll():
                yield self.rows
