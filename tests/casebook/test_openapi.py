"""casebook's OpenAPI document tells the truth, and /docs works offline under the app's CSP.

What the responses actually contain is checked by schemathesis (test_fuzz.py); these are
the document's own promises: every integer bounded, one error schema, the bearer scheme,
the upload's multipart body, files declared as files, links for the stateful walk.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lockstep import unbounded_integers

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
async def document(anonymous: httpx.AsyncClient) -> dict[str, Any]:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_integer_input_is_bounded(document: dict[str, Any]) -> None:
    assert unbounded_integers(document) == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_error_is_the_envelope_and_every_success_is_declared(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["required"] == ["error"]
    for method, path, operation in operations(document):
        responses = operation["responses"]
        assert {"400", "431", "503"} <= set(responses), (method, path)
        for status, response in responses.items():
            content = response.get("content", {})
            if int(status) >= 400:
                assert content == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }, (method, path, status)
            elif int(status) != 204:
                assert content, (method, path, status)
                for media in content.values():
                    assert (
                        media["schema"] != {"type": "string"}
                        or media["schema"].get("format") == "binary"
                    ), (method, path, status)
        if "{" in path:
            assert "404" in responses, (method, path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bearer_auth_uploads_files_and_links_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "an access token from /auth/token",
        }
    }
    ops = {
        operation["operationId"]: (method, path, operation)
        for method, path, operation in operations(document)
    }
    for name, (_, _, operation) in ops.items():
        public = name in {"login", "refresh", "logout"}
        assert bool(operation.get("security")) is not public, name
        assert "401" in operation["responses"], name  # bad credentials, on login too
    upload = ops["upload"][2]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["properties"]["file"] == {"type": "string", "format": "binary"}
    pdf = ops["report_file"][2]["responses"]["200"]["content"]
    assert pdf == {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
    assert "text/csv" in ops["download_rejects"][2]["responses"]["200"]["content"]
    refresh = ops["refresh"][2]["requestBody"]["content"]
    assert set(refresh) == {"application/json", "application/x-www-form-urlencoded"}
    # The organization's settings: a real model both ways, 403/412/422 declared.
    settings = ops["update_organization"][2]
    assert {"403", "412", "422"} <= set(settings["responses"])
    out = {"$ref": "#/components/schemas/OrganizationOut"}
    assert settings["responses"]["200"]["content"]["application/json"]["schema"] == out
    get_settings = ops["get_organization"][2]["responses"]
    assert get_settings["200"]["content"]["application/json"]["schema"] == out
    assert "403" in get_settings
    created = ops["create_case"][2]["responses"]["201"]["links"]
    assert {"get_case", "update_case", "delete_case"} <= set(created)
    for link in created.values():
        assert link["operationId"] in ops


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_docs_are_served_from_the_installed_package(
    anonymous: httpx.AsyncClient, casebook_app: FastAPI
) -> None:
    page = await anonymous.get("/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "http" not in csp
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        response = await anonymous.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 10_000
    init = await anonymous.get("/docs/init.js")
    assert "SwaggerUIBundle" in init.text
    assert "/openapi.json" in init.text
