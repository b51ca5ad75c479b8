"""The API keeps its contract: schemathesis fuzzes every operation of /openapi.json against the running service.

The document fuzzed is the one the service serves (checked first). Every request is signed by a paired
merchant's key (the full URL followed by the body, as chalicelib/security/auth.py checks it) and carries its
token, so the cases reach past authentication; half the ids asked for are of an invoice that exists.
Each answer must be no 5xx and match the document: status code, content type and schema.
"""

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from requests.auth import AuthBase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.bitid_client import BitIdClient

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 20
SEEDED_GUID = "contract-guid"


def _document() -> dict:
    from chalicelib.api import routes as api

    return api._document()


# Methods the document does not name are API Gateway's to refuse, not the app's (the local server answers 501).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"phases": {"coverage": {"unexpected-methods": []}}})
# Loaded when the tests are collected, before the service runs: the tests below check the service serves it.
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)
prefixed = pytest.mark.parametrize("api_url", ["/api"], indirect=True, ids=["prefixed"])


@prefixed
def test_the_service_serves_a_valid_openapi_31_document(api_url):
    response = requests.get(f"{api_url}/openapi.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    served = response.json()
    assert served["servers"] == [{"url": api_url}]
    assert {key: value for key, value in served.items() if key != "servers"} == _document()
    validate(served)
    assert served["openapi"].startswith("3.1")


def test_every_api_route_is_documented_and_nothing_else(chalice_app):
    routes = {
        (method.lower(), path)
        for path, methods in chalice_app.routes.items()
        for method, entry in methods.items()
        if entry.view_function.__module__ == "chalicelib.api.routes"
    }
    documented = {(method, path) for path, operations in _document()["paths"].items() for method in operations}

    assert routes == documented
    assert ("post", "/invoices") in routes and ("get", "/invoices/{invoice_id}") in routes


class Signed(AuthBase):
    """Signs the request as sent: requests has encoded the query and the body by the time it calls this."""

    def __init__(self, client: BitIdClient):
        self.client = client

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        message = request.url.encode() + (body.encode() if isinstance(body, str) else body)
        request.headers["X-Identity"] = self.client.public_key
        request.headers["X-Signature"] = self.client.sign(message)
        return request


@pytest.fixture
def seeded(merchant, notifications_queue):
    """Ids of an invoice of the merchant's store (with a notificationURL, so that it can be resent)."""
    body = {"price": "12.50", "currency": "USD", "guid": SEEDED_GUID, "notificationURL": "https://shop.example/ipn"}
    response = merchant.post("/invoices", body)
    assert response.status_code == 200, response.text
    invoice_id = response.json()["data"]["id"]
    return {"invoice_id": invoice_id, "id": invoice_id, "guid": SEEDED_GUID}


@pytest.fixture(scope="module")
def answers():
    """Status codes answered per operation; each operation that takes a token must have succeeded at least once."""
    seen: dict[tuple[str, str], Counter] = {}
    yield seen
    for (method, path), statuses in seen.items():
        if any("token" in requirement for requirement in _document()["paths"][path][method]["security"]):
            assert statuses[200], f"{method.upper()} {path} never got past authentication: {dict(statuses)}"


def _takes(case, where: str) -> set[str]:
    definition = case.operation.definition.raw
    if where == "security":
        return {name for requirement in definition.get("security", []) for name in requirement}
    body = definition.get("requestBody", {}).get("content", {}).get("application/json", {})
    return set(body.get("schema", {}).get("properties", {}))


def _seed(case, merchant: BitIdClient, seeded: dict) -> None:
    """The merchant's token where the operation takes one, and an existing id for half the ids generated."""
    if "token" in _takes(case, "security"):
        case.query = {**(case.query or {}), "token": merchant.token}
    if isinstance(case.body, dict) and "token" in _takes(case, "body"):
        case.body = {**case.body, "token": merchant.token}
    for values in (case.path_parameters, case.query):
        for name in set(values or {}) & set(seeded):
            if isinstance(values[name], str) and len(values[name]) % 2:
                values[name] = seeded[name]


@prefixed
@schema.parametrize()
# Derandomized: the same cases every run, so a commit's result does not depend on luck.
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_operation_keeps_the_contract(case, api_url, merchant, seeded, answers):
    _seed(case, merchant, seeded)
    response = case.call_and_validate(base_url=api_url, auth=Signed(merchant), checks=CHECKS)
    answers.setdefault((case.operation.method.lower(), case.operation.path), Counter())[response.status_code] += 1


def _text_limits(document: dict) -> list[tuple[str, str, int]]:
    """(path in the body, name in errors, maxLength) of every plain text field createInvoice declares."""
    body = document["paths"]["/invoices"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    limits = []
    for name, field in body["properties"].items():
        for sub, nested in field.get("properties", {}).items():
            if nested.get("type") == "string" and "format" not in nested and "maxLength" in nested:
                limits.append((f"{name}.{sub}", f"{name} {sub}", nested["maxLength"]))
        if field.get("type") == "string" and "format" not in field and "maxLength" in field and name != "token":
            limits.append((name, name, field["maxLength"]))
    return limits


@pytest.mark.parametrize("api_url", [""], indirect=True, ids=["root"])
@pytest.mark.parametrize(("where", "name", "limit"), _text_limits(_document()))
def test_the_service_enforces_the_documented_text_limits(merchant, where, name, limit):
    def create(value: str) -> requests.Response:
        field, _, sub = where.partition(".")
        return merchant.post("/invoices", {"price": 5, "currency": "USD", field: {sub: value} if sub else value})

    assert create("x" * limit).status_code == 200
    refused = create("x" * (limit + 1))
    assert refused.status_code == 400
    assert refused.json() == {"error": f"{name} must be at most {limit} characters"}
