"""The legacy ``Session.bulk_*`` methods: they bypass flush events and ``do_orm_execute``,
so rollup maintenance wraps them (exact: rows are read back by primary key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from lockstep.aggregates.sources import key_of, mapper_of, rows_by_key, state_of
from lockstep.exceptions import AggregateError

if TYPE_CHECKING:
    from lockstep.aggregates.maintenance import Maintenance


def wrap_legacy_bulk(cls: type[Session], maintenance: Maintenance) -> None:
    """Make ``bulk_insert_mappings`` / ``bulk_update_mappings`` / ``bulk_save_objects`` of
    ``cls`` maintain the rollups (chained to whatever wraps them already)."""
    insert_before = cls.bulk_insert_mappings
    update_before = cls.bulk_update_mappings
    save_before = cls.bulk_save_objects

    def bulk_insert_mappings(
        session: Session, mapper: Any, mappings: Any, *args: Any, **kwargs: Any
    ) -> None:
        mappings = list(mappings)
        source = maintenance.source_of(mapper_of(mapper))
        insert_before(session, mapper, mappings, *args, **kwargs)
        if source is not None:
            maintenance.record_rows(session, source, mappings, [])

    def bulk_update_mappings(session: Session, mapper: Any, mappings: Any) -> None:
        mappings = list(mappings)
        source = maintenance.source_of(mapper_of(mapper))
        if source is None:
            update_before(session, mapper, mappings)
            return
        keys = [key_of(source, m) for m in mappings]
        before = [row for _, row in rows_by_key(session, source, keys)]
        update_before(session, mapper, mappings)
        after = [row for _, row in rows_by_key(session, source, keys)]
        maintenance.record_rows(session, source, after, before)

    def bulk_save_objects(session: Session, objects: Any, *args: Any, **kwargs: Any) -> None:
        objects = list(objects)
        touched: dict[str, list[tuple[Any, ...]]] = {}
        for obj in objects:
            state = state_of(obj)
            source = maintenance.source_of(state.mapper)
            if source is not None and state.key is not None:
                touched.setdefault(source.table.name, []).append(tuple(state.key[1]))
        before = {
            name: [r for _, r in rows_by_key(session, maintenance.sources[name], keys)]
            for name, keys in touched.items()
        }
        save_before(session, objects, *args, **kwargs)
        added: dict[str, list[tuple[Any, ...]]] = {n: list(k) for n, k in touched.items()}
        for obj in objects:
            state = state_of(obj)
            source = maintenance.source_of(state.mapper)
            if source is not None and state.key is None:
                key = tuple(state.mapper.primary_key_from_instance(obj))
                if any(v is None for v in key):
                    raise AggregateError(
                        f"bulk_save_objects() of new {source.table.name} rows without "
                        "primary keys: rollups cannot read them back; use session.add_all()"
                    )
                added.setdefault(source.table.name, []).append(key)
        for name, keys in added.items():
            source = maintenance.sources[name]
            after = [r for _, r in rows_by_key(session, source, keys)]
            maintenance.record_rows(session, source, after, before.get(name, []))

    cls.bulk_insert_mappings = bulk_insert_mappings  # type: ignore[method-assign,assignment]
    cls.bulk_update_mappings = bulk_update_mappings  # type: ignore[method-assign,assignment]
    cls.bulk_save_objects = bulk_save_objects  # type: ignore[method-assign,assignment]
