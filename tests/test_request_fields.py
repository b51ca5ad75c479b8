"""Text and URL fields: what no field may carry, refused by name with a 400 (never a 500); response headers."""

import pytest
import requests

from chalicelib.models import StoreModel
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient
from tests.pages_support import post_form, signed_in, text_of

INVOICE = {"price": 10, "currency": "USD"}
LONE_SURROGATE = "\ud800"


def next_index(store) -> int:
    return StoreModel.get(store.store_id, consistent_read=True).next_address_index


# Text


@root_only
@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"orderId": f"PO-{LONE_SURROGATE}"}, "orderId"),
        ({"itemDesc": LONE_SURROGATE}, "itemDesc"),
        ({"itemCode": LONE_SURROGATE}, "itemCode"),
        ({"posData": LONE_SURROGATE}, "posData"),
        ({"posData": {"cart": LONE_SURROGATE}}, "posData"),
        ({"guid": LONE_SURROGATE}, "guid"),
        ({"notificationEmail": f"{LONE_SURROGATE}@shop.example"}, "notificationEmail"),
        ({"buyer": {"name": LONE_SURROGATE}}, "buyer"),
        ({"buyerName": LONE_SURROGATE}, "buyerName"),
        ({"currency": LONE_SURROGATE}, "currency"),
        ({LONE_SURROGATE: "x"}, "a field name"),
        ({"orderId": "PO-1\r\nX-Injected: 1"}, "orderId"),
        ({"itemCode": "MUG\tB"}, "itemCode"),
        ({"buyer": {"address1": "1 Main St\n"}}, "buyer address1"),
        ({"itemDesc": "mug\x00"}, "itemDesc"),
        ({"posData": "\x1b[31mred"}, "posData"),
        ({"buyer": {"phone": "555\x85"}}, "buyer phone"),
    ],
)
def test_unstorable_characters_in_any_text_field_are_refused_by_name(merchant, store, fields, name):
    response = merchant.post("/invoices", {**INVOICE, **fields})

    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(name)
    assert next_index(store) == 0


@root_only
def test_free_text_keeps_its_line_breaks_and_tabs(merchant):
    description, pos_data = "Blue mug\n2 x Red mug\r\n\tgift wrapped", '{\n\t"cart": 7\n}'

    response = merchant.post("/invoices", {**INVOICE, "itemDesc": description, "posData": pos_data})

    assert response.status_code == 200, response.text
    assert (response.json()["data"]["itemDesc"], response.json()["data"]["posData"]) == (description, pos_data)


@root_only
@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"label": LONE_SURROGATE}, "label"),
        ({"label": "till\x00"}, "label"),
        ({"facade": LONE_SURROGATE}, "facade"),
        ({"pairingCode": LONE_SURROGATE}, "pairingCode"),
    ],
)
def test_pairing_requests_with_unstorable_text_are_refused_unauthenticated(api_url, body, name):
    client = BitIdClient(api_url)

    response = client.post("/tokens", {"id": client.sin, "facade": "pos", **body}, signed=False)

    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(name)


@root_only
def test_a_store_name_with_a_control_character_is_refused_on_the_page(api_url, user):
    session = signed_in(api_url, user.login)

    refused = post_form(session, f"{api_url}/stores", f"{api_url}/stores", name="Shop\x07", default_currency="USD")

    assert refused.status_code == 400 and "store name contains a control character" in text_of(refused)


# URLs

BAD_URLS = [
    "http://[::1",
    "http://[::1/ipn",
    "http://[zz]/ipn",
    "http://shop.example:99999/ipn",
    "http://shop.example:0/ipn",
    "http://shop.example:port/ipn",
    "http://shop.example/ipn path",
    "http://shop.example/ipn\r\nX-Injected: 1",
    "http://shop.example/ipn\x00",
    "http://shop.example/\u2028",
    "http://shop\\evil.example/ipn",
    "http://shop..example/ipn",
    "https://shop.example/" + "a" * 2000,
    f"https://shop.example/{LONE_SURROGATE}",
    "ftp://shop.example/ipn",
    "https:///ipn",
]
GOOD_URLS = ["http://[::1]:8080/ipn", "https://shop.example:443/ipn?order=1#done", "https://user@shop.example/ipn"]


@root_only
@pytest.mark.parametrize("field", ["notificationURL", "redirectURL", "closeURL"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_url_fields_are_parsed_strictly(merchant, store, field, url):
    response = merchant.post("/invoices", {**INVOICE, field: url})

    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)
    assert next_index(store) == 0


@root_only
@pytest.mark.parametrize("url", GOOD_URLS)
def test_well_formed_urls_are_kept_as_sent(merchant, url):
    response = merchant.post("/invoices", {**INVOICE, "redirectURL": url, "closeURL": url})

    assert response.status_code == 200, response.text
    assert (response.json()["data"]["redirectURL"], response.json()["data"]["closeURL"]) == (url, url)


@root_only
@pytest.mark.parametrize("website", ["http://[::1", "http://shop.example:99999", "https://shop.example/\r\n"])
def test_a_store_website_is_checked_the_same_way_on_the_page(api_url, user, store, website):
    session = signed_in(api_url, user.login)
    page = f"{api_url}/stores/{store.store_id}"
    form = {
        "name": "Test shop",
        "default_currency": "USD",
        "invoice_expiration_minutes": "15",
        "transaction_speed": "medium",
        "wallet": store.wallet,
        "website": website,
    }

    refused = post_form(session, page, page, action="save", **form)

    assert refused.status_code == 400
    assert "website" in text_of(refused)
    assert StoreModel.get(store.store_id).website is None


# Headers


@root_only
def test_responses_carrying_tokens_are_never_cached(api_url, merchant):
    client = BitIdClient(api_url)
    paired = client.post("/tokens", {"id": client.sin, "facade": "pos"}, signed=False)
    listed = merchant.get("/tokens", token=False)
    created = merchant.post("/invoices", INVOICE)
    read = merchant.get(f"/invoices/{created.json()['data']['id']}")
    refused = merchant.post("/invoices", {"currency": "USD"})

    for response in (paired, listed, created, read, refused):
        assert response.headers["Cache-Control"] == "no-store", response.request.url
    assert "token" in created.json()["data"] and "token" in paired.json()["data"][0]


@root_only
@pytest.mark.parametrize("path", ["/rates", "/tokens", "/invoices/unknown"])
def test_the_api_sends_hsts_over_https_only(api_url, path):
    over_https = requests.get(api_url + path, headers={"X-Forwarded-Proto": "https"})
    over_http = requests.get(api_url + path)

    assert over_https.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in over_http.headers
