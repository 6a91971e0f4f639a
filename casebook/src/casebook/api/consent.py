"""Consent records of a case's subjects: record, revoke (never deleted), and each subject's
status on a day, decided by :mod:`casebook.consent`."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from casebook.api.cases import load_case
from casebook.api.deps import PrincipalDep, ServicesDep, WriterDep, organization_of
from casebook.api.subjects import load_subject
from casebook.auth import Principal
from casebook.consent import consent_on
from casebook.models import ConsentRecord, Subject
from casebook.responses import CaseConsentOut, ConsentOut, SubjectConsentOut
from casebook.schemas import ConsentCreate, ConsentRevoke, Date, IdPath, consent_out
from lockstep import (
    ConflictError,
    JSONBytesResponse,
    NotFoundError,
    Row,
    Scope,
    ValidationFailedError,
    cached,
    error_responses,
    openapi_links,
    precondition,
)

AsOfQuery = Annotated[
    Date | None, Query(description="The day the status is decided for (default: today, UTC)")
]
CONSENT_LINKS = openapi_links("consent_id", "get_consent", "revoke_consent")

router = APIRouter(tags=["consent"])


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _org_today(principal: PrincipalDep) -> tuple[int, str]:
    # A status changes at midnight without any write: the day is part of whose answer it is.
    return principal.organization_id, today().isoformat()


async def load_consent(
    session: AsyncSession, principal: Principal, consent_id: int
) -> ConsentRecord:
    record = await session.scalar(
        select(ConsentRecord).where(
            ConsentRecord.id == consent_id,
            ConsentRecord.organization_id == principal.organization_id,
        )
    )
    if record is None:
        raise NotFoundError(f"consent record {consent_id} not found")
    return record


def _newest_first(records: list[ConsentRecord]) -> list[ConsentRecord]:
    return sorted(records, key=lambda r: (r.granted_on, r.id), reverse=True)


@router.get("/subjects/{subject_id}/consents", response_model=SubjectConsentOut)
@cached(
    name="subject_consents",
    depends=lambda subject_id: [
        Row("subjects", subject_id),
        Scope("consent_records", subject_id=subject_id),
    ],
    vary=_org_today,
)
async def list_subject_consents(
    subject_id: IdPath, principal: PrincipalDep, services: ServicesDep, as_of: AsOfQuery = None
) -> JSONBytesResponse:
    """The subject's consent records, newest grant first, and its status on ``as_of``."""
    day = as_of or today()
    async with services.db.reader() as session:
        await load_subject(session, principal, subject_id)
        records = list(
            (
                await session.scalars(
                    select(ConsentRecord).where(
                        ConsentRecord.subject_id == subject_id,
                        ConsentRecord.organization_id == principal.organization_id,
                    )
                )
            ).all()
        )
    decided = consent_on(records, day)
    return JSONBytesResponse(
        {
            "subject_id": subject_id,
            "as_of": day,
            "status": decided.status.value,
            "until": decided.until,
            "items": [consent_out(r) for r in _newest_first(records)],
        }
    )


@router.post(
    "/subjects/{subject_id}/consents",
    status_code=201,
    response_model=ConsentOut,
    responses={201: {"description": "Created", "links": CONSENT_LINKS}, **error_responses(403)},
)
async def create_consent(
    subject_id: IdPath, body: ConsentCreate, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Records a consent (or another lawful basis) for the subject, as the caller."""
    async with services.db.writer() as session:
        await load_subject(session, principal, subject_id)
        record = ConsentRecord(
            organization_id=principal.organization_id,
            subject_id=subject_id,
            recorded_by_id=principal.user_id,
            created_at=dt.datetime.now(dt.UTC),
            version=1,
            **body.model_dump(),
        )
        session.add(record)
        await session.flush()
    return JSONBytesResponse(
        consent_out(record),
        status_code=201,
        headers={"Location": f"/api/v1/consents/{record.id}"},
    )


@router.get("/consents/{consent_id}", response_model=ConsentOut)
@cached(
    name="consent",
    depends=lambda consent_id: [Row("consent_records", consent_id)],
    vary=organization_of,
)
async def get_consent(
    consent_id: IdPath, principal: PrincipalDep, services: ServicesDep
) -> JSONBytesResponse:
    async with services.db.reader() as session:
        record = await load_consent(session, principal, consent_id)
    return JSONBytesResponse(consent_out(record))


@router.post(
    "/consents/{consent_id}/revoke",
    response_model=ConsentOut,
    responses=error_responses(403, 409, 412),
)
@precondition(get_consent, action="revoke")
async def revoke_consent(
    consent_id: IdPath, body: ConsentRevoke, principal: WriterDep, services: ServicesDep
) -> JSONBytesResponse:
    """Sets ``revoked_on`` (default today): the record stays, as evidence of what held when.
    409 when it was already revoked; 422 for a day before the grant or in the future."""
    day = body.revoked_on or today()
    async with services.db.writer() as session:
        record = await load_consent(session, principal, consent_id)
        if record.revoked_on is not None:
            raise ConflictError(f"consent record {consent_id} was revoked on {record.revoked_on}")
        problem = None
        if day < record.granted_on:
            problem = "may not be before the record was granted"
        elif day > today():
            problem = "may not be in the future"
        if problem:
            raise ValidationFailedError(
                f"revoked_on {problem}",
                details=[{"loc": ["body", "revoked_on"], "msg": problem, "type": "date_order"}],
            )
        record.revoked_on = day
        record.version += 1
    return JSONBytesResponse(consent_out(record))


@router.get("/cases/{case_id}/consent", response_model=CaseConsentOut)
@cached(
    name="case_consent",
    depends=lambda case_id, principal: [
        Row("cases", case_id),
        Scope("subjects", case_id=case_id),
        Scope("consent_records", organization_id=principal.organization_id),
    ],
    vary=_org_today,
)
async def case_consent(
    case_id: IdPath, principal: PrincipalDep, services: ServicesDep, as_of: AsOfQuery = None
) -> JSONBytesResponse:
    """Each subject of the case (by id) with its consent status on ``as_of``."""
    day = as_of or today()
    async with services.db.reader() as session:
        await load_case(session, principal, case_id)
        subjects = (
            await session.execute(
                select(Subject.id, Subject.name)
                .where(
                    Subject.case_id == case_id, Subject.organization_id == principal.organization_id
                )
                .order_by(Subject.id)
            )
        ).all()
        records = (
            await session.scalars(
                select(ConsentRecord)
                .join(Subject, Subject.id == ConsentRecord.subject_id)
                .where(
                    Subject.case_id == case_id,
                    ConsentRecord.organization_id == principal.organization_id,
                )
            )
        ).all()
    by_subject: dict[int, list[ConsentRecord]] = defaultdict(list)
    for record in records:
        by_subject[record.subject_id].append(record)
    items = []
    for subject_id, name in subjects:
        decided = consent_on(by_subject[subject_id], day)
        items.append(
            {
                "subject_id": subject_id,
                "name": name,
                "status": decided.status.value,
                "until": decided.until,
            }
        )
    return JSONBytesResponse({"case_id": case_id, "as_of": day, "items": items})
