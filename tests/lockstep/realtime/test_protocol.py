"""The wire format, without a server: frames in, replies and pushes out."""

from __future__ import annotations

import orjson
import pytest

from lockstep.realtime import protocol as p


def test_a_frame_holds_several_commands_and_unknown_fields_are_ignored() -> None:
    frame = b'{"id":1,"connect":{"token":"t","new":1},"extra":true}\n\n{"id":2,"subscribe":{}}\n'
    commands = p.decode_frame(frame)
    assert [(c.id, c.method) for c in commands] == [(1, "connect"), (2, "subscribe")]
    assert commands[0].params == {"token": "t", "new": 1}


def test_pongs_unknown_methods_and_bad_frames() -> None:
    assert p.decode_frame("{}") == [p.Command(0, None, {})]
    assert p.decode_frame('{"id":3,"teleport":{}}')[0].method == "?"
    for bad in ("not json", "[1]", '{"id":-1,"connect":{}}', '{"id":true,"connect":{}}'):
        with pytest.raises(p.BadFrame):
            p.decode_frame(bad)


def test_a_publication_is_encoded_once_per_frame_shape() -> None:
    pub = p.Publication("case:7", b'{"a":1}', offset=5)
    assert orjson.loads(pub.frame(uni=False)) == {
        "push": {"channel": "case:7", "pub": {"data": {"a": 1}, "offset": 5}}
    }
    assert orjson.loads(pub.frame(uni=True)) == {
        "channel": "case:7",
        "pub": {"data": {"a": 1}, "offset": 5},
    }
    assert pub.frame(uni=False) is pub.frame(uni=False)
    volatile = p.Publication("live:1", b"[1]")
    assert orjson.loads(volatile.body()) == {"data": [1]}


def test_replies_and_errors() -> None:
    assert orjson.loads(p.encode_reply(4, "subscribe", {"offset": 1})) == {
        "id": 4,
        "subscribe": {"offset": 1},
    }
    assert orjson.loads(p.encode_error(5, p.INTERNAL)) == {
        "id": 5,
        "error": {"code": 100, "message": "internal server error", "temporary": True},
    }
    assert p.SLOW.reconnect
    assert not p.INVALID_TOKEN.reconnect
