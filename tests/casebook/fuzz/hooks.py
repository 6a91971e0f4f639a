"""schemathesis hooks for casebook's fuzz runs (loaded with ``SCHEMATHESIS_HOOKS=hooks``).

``refusals_name_a_rule``: a schema-valid request refused with 400 or 422 must be refused for
a reason no schema can express (see schemathesis.toml); any other refusal of valid data
means the OpenAPI document promises more than the server accepts.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# 400s a schema-valid request may get: an opaque token or a relation between parameters.
BUSINESS_400 = frozenset({"invalid cursor", "'from' must not be after 'to'"})


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
        details = details if isinstance(details, list) else [details]
        if not all(isinstance(d, dict) for d in details):
            raise AssertionError(f"schema-valid request refused with 422: {details}")
        if "/imports" in case.path and all(_about_the_file(d) for d in details):
            return  # an upload is checked against its own content: no schema can say that
        kinds = {detail.get("type") for detail in details}
        if kinds != {"unknown_reference"}:
            raise AssertionError(f"schema-valid request refused with 422: {error['details']}")


# What an import refuses for the uploaded file's own content: not a statement, no such
# column for a mapping answer, an answer it does not understand, a profile for other files,
# questions only a person can answer about its columns.
FILE_RULES = frozenset({"file", "map", "mapping", "profile"})


def _about_the_file(detail: dict[str, Any]) -> bool:
    if "questions" in detail:
        return True  # what the file leaves open (which column holds what) is asked back
    loc = detail.get("loc") or []
    return bool(loc) and loc[0] in FILE_RULES
