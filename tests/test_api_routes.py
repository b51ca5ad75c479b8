"""Every route of the API answers the same with and without a trailing slash (btcpay-python adds one)."""

import pytest
import requests

from tests.api_fixtures import root_only

INVOICE = {"price": 10, "currency": "USD", "orderId": "A-1", "guid": "route-check"}
GET_ROUTES = [
    "/rates",
    "/rates/BTC",
    "/rates/BTC/USD",
    "/tokens",
    "/invoices",
    "/invoices/{id}",
    "/invoices/guid/route-check",
]


def without_clock(body: dict) -> dict:
    """The body with every invoice's currentTime removed: it moves between two requests."""
    data = body["data"]
    for invoice in data if isinstance(data, list) else [data]:
        if isinstance(invoice, dict):
            invoice.pop("currentTime", None)
    return body


@pytest.mark.parametrize("route", GET_ROUTES)
def test_get_routes_with_and_without_trailing_slash(merchant, route):
    invoice_id = merchant.post("/invoices", INVOICE).json()["data"]["id"]
    path = route.format(id=invoice_id)

    plain, slashed = merchant.get(path), merchant.get(path + "/")

    assert plain.status_code == slashed.status_code == 200, (plain.text, slashed.text)
    assert without_clock(plain.json()) == without_clock(slashed.json())


@pytest.mark.parametrize("path", ["/invoices", "/invoices/"])
def test_post_invoices_with_and_without_trailing_slash(merchant, path):
    response = merchant.post(path, {"price": 10, "currency": "USD"})

    assert response.status_code == 200
    assert response.json()["facade"] == "merchant/invoice"


@pytest.mark.parametrize("path", ["/tokens", "/tokens/"])
def test_post_tokens_with_and_without_trailing_slash(merchant, path):
    response = merchant.post(path, {"facade": "pos"})

    assert response.status_code == 200
    assert response.json()["data"][0]["facade"] == "pos"


@root_only
def test_a_media_type_the_api_does_not_take_is_refused_in_the_api_error_form(merchant, api_url):
    response = requests.post(f"{api_url}/invoices", data="<invoice/>", headers={"Content-Type": "application/xml"})

    assert response.status_code == 415
    assert response.json() == {"error": "Unsupported media type: application/xml"}
