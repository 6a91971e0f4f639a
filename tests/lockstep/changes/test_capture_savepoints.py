"""A rolled-back savepoint must not take a later, surviving savepoint's changes with it.

Regression: rolled-back savepoints were remembered by ``id()``; once the transaction object
was freed, a later savepoint could get the same id and its changes were dropped.
"""

from __future__ import annotations

import gc

import pytest

from ..conftest import Feed, Folder


async def test_empty_rolled_back_savepoints_do_not_shadow_later_ones(feed: Feed) -> None:
    async with feed.db.writer() as s:
        for i in range(1, 21):
            with pytest.raises(RuntimeError):
                async with s.begin_nested():
                    raise RuntimeError("nothing written in it")
            gc.collect()  # free the rolled-back transaction object, so its id can be reused
            async with s.begin_nested():
                s.add(Folder(id=i, org_id=1))
                await s.flush()
    keys = {c.key for cs in feed.published for c in cs.changes if c.table == "folders"}
    assert keys == {(str(i),) for i in range(1, 21)}
