"""Evidence files of a case and their chain of custody.

Guarantees, whichever way a file arrives or is checked (the API, ``casebook evidence
verify``):

* **The hash is the server's.** An upload streams through a :class:`~lockstep.SpoolWriter`
  (:func:`casebook.uploads.receive_upload`): SHA-256 and size are computed from the bytes as
  they are written to disk, never taken from the client, and an upload over the limit is
  refused (413) as soon as it crosses it.
* **Content-addressed storage.** The file is kept at
  ``<data_dir>/evidence/<organization>/<case>/<sha256[:2]>/<sha256>`` (:func:`stored_path`):
  the client's filename never becomes a path. It is kept for display only, sanitized
  (:func:`display_name`), and offered on download through :func:`content_disposition`.
* **Custody is append-only.** Every upload, download, verification (``ok``, ``mismatch``,
  ``missing``) and deletion adds an :class:`~casebook.models.CustodyEvent` (who, when, the
  hash seen) in the same transaction as what it records; nothing updates or deletes one
  (a case's deletion aside, which removes the case with everything in it). The audit trail
  chains every insert as it does every other write.
* **Deletion is a tombstone.** The evidence row stays (``deleted_at``, ``deleted_by_id``)
  with its custody history; the file is removed after the commit unless another live item
  of the case holds the same content.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.auth import Principal
from casebook.models import CustodyEvent, Evidence, Note, User
from lockstep import ConflictError, NotFoundError, Spool

EVIDENCE = "evidence"
INCOMING = ".incoming"
DEFAULT_NAME = "evidence"
MAX_NAME = 255
OCTET_STREAM = "application/octet-stream"
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,49}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,49}"
)
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9 !#$%&\'()+,.;=@\[\]^_`{}~-]")

UPLOADED, DOWNLOADED, VERIFIED, DELETED = "uploaded", "downloaded", "verified", "deleted"
OK, MISMATCH, MISSING = "ok", "mismatch", "missing"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- names and places ---------------------------------------------------------------------------


def evidence_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / EVIDENCE


def incoming_dir(data_dir: Path) -> Path:
    """Where uploads stream to before they are moved to their place (same file system)."""
    return evidence_dir(data_dir) / INCOMING


def stored_path(data_dir: Path, item: Evidence) -> Path:
    """Where ``item``'s file lives: a function of its organization, case and content only."""
    sha = item.sha256
    if not re.fullmatch(r"[0-9a-f]{64}", sha):  # never a path out of the directory
        raise ValueError(f"evidence {item.id} has no valid SHA-256")
    return evidence_dir(data_dir) / str(item.organization_id) / str(item.case_id) / sha[:2] / sha


def display_name(raw: str) -> str:
    """A client's filename made safe to show and to offer: its last path component (``/``
    and ``\\`` both separate), Unicode NFC, without control or format characters (CR, LF,
    NUL, bidi overrides), leading dots or surrounding blanks, at most 255 characters;
    ``evidence`` when nothing is left."""
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = name.strip().lstrip(".").strip()
    return name[:MAX_NAME] or DEFAULT_NAME


def media_type(declared: str) -> str:
    """The part's declared media type when it is a plain ``type/subtype`` (parameters
    dropped, lower case); ``application/octet-stream`` otherwise."""
    main = declared.split(";", 1)[0].strip().lower()
    return main if _MEDIA_TYPE.fullmatch(main) else OCTET_STREAM


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback (quotes, backslashes and anything else unsafe
    replaced) and the exact UTF-8 name (RFC 6266 / 5987)."""
    name = display_name(name)
    fallback = _UNSAFE_ASCII.sub("_", name) or DEFAULT_NAME
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def hash_file(path: Path) -> str | None:
    """The SHA-256 of the file at ``path`` (read in chunks); None when there is none."""
    try:
        return Spool.of_path(path).sha256
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


# -- rows ---------------------------------------------------------------------------------------


async def load_evidence(session: AsyncSession, principal: Principal, evidence_id: int) -> Evidence:
    """The item if it belongs to the caller's organization (tombstones too); NotFoundError
    otherwise."""
    item = await session.scalar(
        select(Evidence).where(
            Evidence.id == evidence_id, Evidence.organization_id == principal.organization_id
        )
    )
    if item is None:
        raise NotFoundError(f"evidence {evidence_id} not found")
    return item


async def load_note(session: AsyncSession, principal: Principal, note_id: int) -> Note:
    note = await session.scalar(
        select(Note).where(Note.id == note_id, Note.organization_id == principal.organization_id)
    )
    if note is None:
        raise NotFoundError(f"note {note_id} not found")
    return note


def record(
    session: AsyncSession,
    item: Evidence,
    action: str,
    *,
    actor: str,
    user_id: int | None,
    sha256: str = "",
    outcome: str = "",
) -> CustodyEvent:
    """Add a custody event of ``item`` to the caller's transaction."""
    event = CustodyEvent(
        organization_id=item.organization_id,
        case_id=item.case_id,
        evidence_id=item.id,
        action=action,
        outcome=outcome,
        sha256=sha256,
        actor=actor,
        user_id=user_id,
        at=now(),
    )
    session.add(event)
    return event


def place(spool: Spool, target: Path) -> bool:
    """Move the spooled upload to ``target``; True when no file was there before. An
    existing file is replaced: the new bytes hash to its name, so a damaged copy is mended."""
    existed = target.is_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    spool.path.replace(target)
    return not existed


def must_exist(item: Evidence) -> None:
    if item.deleted_at is not None:
        raise ConflictError(
            f"evidence {item.id} was deleted on {item.deleted_at:%Y-%m-%d}; its file is gone "
            "(its metadata and custody history remain)",
            details={"deleted_at": item.deleted_at.isoformat()},
        )


async def rehash(data_dir: Path, item: Evidence) -> str | None:
    """The SHA-256 of ``item``'s stored file now (read off the event loop); None: no file."""
    return await asyncio.to_thread(hash_file, stored_path(data_dir, item))


def record_verification(
    session: AsyncSession, item: Evidence, seen: str | None, *, actor: str, user_id: int | None
) -> str:
    """Record what hashing ``item``'s file found (``seen``: :func:`rehash`) on the item and
    as a custody event in the caller's transaction: ``ok``, ``mismatch`` or ``missing``."""
    must_exist(item)
    outcome = MISSING if seen is None else OK if seen == item.sha256 else MISMATCH
    item.verified_at = now()
    item.verify_status = outcome
    item.version += 1
    record(
        session, item, VERIFIED, actor=actor, user_id=user_id, sha256=seen or "", outcome=outcome
    )
    return outcome


async def still_used(session: AsyncSession, item: Evidence) -> bool:
    """Whether another live item of ``item``'s case holds the same content (its file)."""
    others = await session.scalar(
        select(func.count())
        .select_from(Evidence)
        .where(
            Evidence.case_id == item.case_id,
            Evidence.sha256 == item.sha256,
            Evidence.id != item.id,
            Evidence.deleted_at.is_(None),
        )
    )
    return bool(others)


# -- the API's forms ----------------------------------------------------------------------------


def _who(user: User | None) -> dict[str, Any] | None:
    return None if user is None else {"id": user.id, "full_name": user.full_name}


def note_out(note: Note, users: dict[int, User]) -> dict[str, Any]:
    """``responses.NoteOut``."""
    return {
        "id": note.id,
        "case_id": note.case_id,
        "author_id": note.author_id,
        "author": _who(users.get(note.author_id or 0)),
        "body": note.body,
        "created_at": note.created_at,
        "updated_at": note.updated_at,
        "version": note.version,
    }


def evidence_out(item: Evidence, users: dict[int, User]) -> dict[str, Any]:
    """``responses.EvidenceOut``."""
    live = item.deleted_at is None
    return {
        "id": item.id,
        "case_id": item.case_id,
        "filename": item.filename,
        "content_type": item.content_type,
        "description": item.description,
        "size_bytes": item.size_bytes,
        "sha256": item.sha256,
        "uploaded_by_id": item.uploaded_by_id,
        "uploaded_by": _who(users.get(item.uploaded_by_id or 0)),
        "created_at": item.created_at,
        "verified_at": item.verified_at,
        "verify_status": item.verify_status,
        "deleted_at": item.deleted_at,
        "deleted_by_id": item.deleted_by_id,
        "content_url": f"/api/v1/evidence/{item.id}/content" if live else None,
        "version": item.version,
    }


def custody_out(event: CustodyEvent, users: dict[int, User]) -> dict[str, Any]:
    """``responses.CustodyEventOut``."""
    return {
        "id": event.id,
        "evidence_id": event.evidence_id,
        "action": event.action,
        "outcome": event.outcome or None,
        "sha256": event.sha256 or None,
        "actor": event.actor,
        "user": _who(users.get(event.user_id or 0)),
        "at": event.at,
    }


async def users_of(session: AsyncSession, ids: set[int | None]) -> dict[int, User]:
    """The users named by ``ids`` (None ignored), by id."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    found = await session.scalars(select(User).where(User.id.in_(wanted)))
    return {u.id: u for u in found}
