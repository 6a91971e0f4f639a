"""schemathesis hooks for casebook's fuzz runs (loaded with ``SCHEMATHESIS_HOOKS=hooks``).

``refusals_name_a_rule``: a schema-valid request refused with 400 or 422 must be refused for
a reason no schema can express (see schemathesis.toml); any other refusal of valid data
means the OpenAPI document promises more than the server accepts.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# 400s a schema-valid request may get: an opaque token or a relation between parameters.
BUSINESS_400 = frozenset(
    {
        "invalid cursor",
        "'from' must not be after 'to'",
        "'opened_from' must not be after 'opened_to'",
        "at most 240 months at a time",
    }
)
# 422s a schema-valid body may get: a reference to no row, an identifier that starts like an
# IBAN and fails its checksum, two dates in the wrong order (or a revocation before the
# grant or in the future).
BUSINESS_422 = frozenset({"unknown_reference", "invalid_iban", "date_order"})


@schemathesis.check
def refusals_name_a_rule(ctx: Any, response: Any, case: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if response.status_code not in (400, 422):
        return
    error = response.json()["error"]
    if response.status_code == 400 and error["message"] not in BUSINESS_400:
        raise AssertionError(f"schema-valid request refused with 400: {error['message']}")
    if response.status_code == 422:
        details = error.get("details") or [{}]
        if isinstance(details, dict) and "questions" in details:
            return  # a statement file that leaves questions its cells cannot answer
        if not isinstance(details, list):
            raise AssertionError(f"schema-valid request refused with 422: {details}")
        kinds = {detail.get("type") for detail in details}
        # An uploaded file's content (a schema can only say "binary") that is no statement,
        # or that the answers given do not fit (a column it does not have).
        about_file = all((detail.get("loc") or [None])[0] == "file" for detail in details)
        if not kinds <= BUSINESS_422 and not about_file:
            raise AssertionError(f"schema-valid request refused with 422: {error['details']}")
