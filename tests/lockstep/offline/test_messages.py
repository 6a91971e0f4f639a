"""Shape messages from logged images, and snapshot pages put back to their position: pure."""

from __future__ import annotations

import orjson
from sqlalchemy import Column, Integer, MetaData, String, Table

from lockstep.offline.capture import ShapedTable
from lockstep.offline.filters import equal_to
from lockstep.offline.messages import Entry, changes, insert, inserts, rows_at
from lockstep.offline.shapes import Offset, Shape, ShapeDefinition, ShapeRequest, resolve

notes = Table(
    "notes",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("org", Integer),
    Column("status", String(10)),
    Column("body", String(100)),
)


def shape(where: str | None = None, replica: str = "default") -> object:
    definition = ShapeDefinition(Shape(notes, columns=["id", "status", "body"]), ShapedTable(notes))
    request = ShapeRequest(table="notes", offset=Offset("start"), where=where, replica=replica)
    return resolve(definition, request, equal_to({"org": 1}), generation="g", epoch=0, version="")


def row(id_: int, org: int = 1, status: str = "open", body: str = "b") -> dict[str, str | None]:
    return {"id": str(id_), "org": str(org), "status": status, "body": body}


def as_read(image: dict[str, str | None]) -> tuple[str | None, ...]:
    """A snapshot row as the reader returns it: the shape's columns (id, status, body)."""
    return (image["id"], image["status"], image["body"])


def test_entering_staying_and_leaving_the_shape() -> None:
    s = shape("status = 'open'")
    entries = [
        Entry(1, 10, "[1]", None, row(1)),  # a new row: insert
        Entry(2, 11, "[1]", row(1), row(1, body="c")),  # stays: update, changed column only
        Entry(3, 12, "[1]", row(1, body="c"), row(1, status="closed", body="c")),  # leaves
        Entry(4, 13, "[2]", row(2, org=2), row(2, org=1)),  # moves into the tenant: insert
        Entry(5, 14, "[2]", row(2), row(2, org=3)),  # moves out of the tenant: delete
        Entry(6, 15, "[3]", row(3, org=2), row(3, org=2, body="x")),  # never visible
        Entry(7, 16, "[4]", row(4), row(4)),  # no column of the shape changed
    ]
    out = changes(s, entries)  # type: ignore[arg-type]
    assert [(m["headers"]["operation"], m["headers"]["txids"]) for m in out] == [
        ("insert", [10]),
        ("update", [11]),
        ("delete", [12]),
        ("insert", [13]),
        ("delete", [14]),
    ]
    assert out[1]["value"] == {"id": "1", "body": "c"}
    assert out[2]["value"] == {"id": "1"}
    assert out[0]["key"] == '"public"."notes"/"1"'
    assert "org" not in out[0]["value"]  # scope columns are not sent unless declared


def test_replica_full_sends_whole_rows_and_old_values() -> None:
    s = shape(replica="full")
    [update, delete] = changes(
        s,  # type: ignore[arg-type]
        [Entry(1, 1, "[1]", row(1), row(1, body="c")), Entry(2, 2, "[1]", row(1, body="c"), None)],
    )
    assert update["value"] == {"id": "1", "status": "open", "body": "c"}
    assert update["old_value"] == {"body": "b"}
    assert delete["value"] == {"id": "1", "status": "open", "body": "c"}


def test_a_page_read_later_is_put_back_to_the_snapshot_position() -> None:
    s = shape()
    # At the snapshot's position rows 1..6 existed; since then 2 changed, 3 was deleted,
    # 4 moved to another tenant, 7 was inserted and 5 moved in from another tenant.
    now = [as_read(row(1)), as_read(row(2, body="new")), as_read(row(5)), as_read(row(6))]
    now.append(as_read(row(7)))
    since = [
        Entry(9, 1, "[2]", row(2), row(2, body="new")),
        Entry(9, 1, "[3]", row(3), None),
        Entry(10, 2, "[4]", row(4), row(4, org=2)),
        Entry(10, 2, "[7]", None, row(7)),
        Entry(11, 3, "[5]", row(5, org=2), row(5)),
    ]
    page = rows_at(s, now, since, after_key=None, limit=None, current_complete=True)  # type: ignore[arg-type]
    assert [r[0] for r in page.rows] == ["1", "2", "3", "4", "6"]
    assert page.rows[1] == ("2", "open", "b")  # put back, cut to the shape's columns
    assert page.last_key is None
    first = rows_at(s, now[:3], since, after_key=None, limit=2, current_complete=False)  # type: ignore[arg-type]
    assert [r[0] for r in first.rows] == ["1", "2"]
    assert first.last_key == 2


def test_snapshot_inserts_encode_as_insert_messages() -> None:
    s = shape()
    rows = [as_read(row(n)) for n in range(1, 300)] + [("300", None, 'say "hi"')]
    expected = [insert(s, dict(zip(("id", "status", "body"), r, strict=True))) for r in rows]  # type: ignore[arg-type]
    encoded = inserts(s, rows)  # type: ignore[arg-type]
    assert b"[" + encoded + b"]" == orjson.dumps(expected)  # across several batches
    assert expected[-1]["value"] == {"id": "300", "status": None, "body": 'say "hi"'}
    assert inserts(s, []) == b""  # type: ignore[arg-type]
