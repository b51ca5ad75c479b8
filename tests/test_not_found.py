"""Addresses no route serves: a readable page for a person, the API's JSON error for a client."""

import pytest
import requests

from tests.pages_support import browser, text_of

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
MISTYPED = ["/stroes", "/stores/abc/settings", "/invoices/abc/def/ghi", "/login/", "/account"]


@pytest.mark.parametrize("path", MISTYPED)
def test_a_mistyped_address_is_a_page_with_a_link_home(api_url, path):
    response = browser().get(api_url + path, headers={"Accept": BROWSER_ACCEPT}, allow_redirects=False)

    if path == "/login/":
        # A trailing slash reaches its route, as on API Gateway.
        assert response.status_code == 200
        return
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "There is no page at this address." in text_of(response)
    assert f'href="{api_url}/"' in response.text
    assert "Missing Authentication Token" not in response.text


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_a_client_gets_the_apis_json_error(api_url, accept):
    headers = {"Accept": accept} if accept else {}
    response = requests.get(f"{api_url}/invoices/abc/def", headers=headers, timeout=10)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"error": "No such resource: /invoices/abc/def"}


def test_the_catch_all_never_shadows_a_route(api_url, store):
    page = {"Accept": BROWSER_ACCEPT}
    assert requests.get(f"{api_url}/login", headers=page, timeout=10).status_code == 200
    assert requests.get(f"{api_url}/static/paylambda.css", timeout=10).status_code == 200
    assert requests.get(f"{api_url}/rates/BTC/USD", timeout=10).json()["data"]["code"] == "USD"
    # A route that exists answers for itself, even when what it names does not.
    missing_invoice = requests.get(f"{api_url}/invoices/no-such-invoice", timeout=10)
    assert missing_invoice.status_code in (401, 403, 404)
    assert "No such resource" not in missing_invoice.text
    stranger = requests.get(f"{api_url}/stores/{store.store_id}", headers=page, allow_redirects=False, timeout=10)
    assert stranger.status_code == 303 and "/login" in stranger.headers["Location"]
