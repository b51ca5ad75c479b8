"""Every HTTP request leaves one JSON line: route, method, status, latency, store; never a secret."""

import json

from tests.api_fixtures import root_only
from tests.conftest import PASSWORD
from tests.pages_support import signed_in


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"route"')]


@root_only
def test_an_api_request_logs_its_route_status_and_store_but_not_its_token(api_url, merchant, store, capsys):
    created = merchant.post("/invoices", {"price": 5, "currency": "USD"})
    assert created.status_code == 200, created.text
    invoice_id = created.json()["data"]["id"]
    capsys.readouterr()

    assert merchant.get(f"/invoices/{invoice_id}").status_code == 200
    assert merchant.get("/invoices/nope").status_code == 404

    output = capsys.readouterr().out
    found, missing = _lines(output)
    assert {key: found[key] for key in ("route", "method", "status", "storeId")} == {
        "route": "/invoices/{invoice_id}",
        "method": "GET",
        "status": 200,
        "storeId": store.store_id,
    }
    assert (missing["status"], missing["storeId"]) == (404, store.store_id)
    assert 0 < found["latencyMs"] < 10_000
    assert merchant.token not in output and invoice_id not in output


@root_only
def test_a_page_logs_the_store_in_its_path_and_no_password(api_url, user, store, capsys):
    from chalicelib.pages.rendering import SESSION_COOKIE

    capsys.readouterr()
    session = signed_in(api_url, user.login)
    assert session.get(f"{api_url}/stores/{store.store_id}").status_code == 200
    assert session.get(f"{api_url}/stores", allow_redirects=False).status_code == 200

    output = capsys.readouterr().out
    *signing_in, store_page, stores_page = _lines(output)
    assert ("/login", "POST", 303) in {(line["route"], line["method"], line["status"]) for line in signing_in}
    assert (store_page["route"], store_page["storeId"]) == ("/stores/{store_id}", store.store_id)
    assert (stores_page["route"], stores_page["status"], stores_page["storeId"]) == ("/stores", 200, None)
    assert PASSWORD not in output and session.cookies[SESSION_COOKIE] not in output
