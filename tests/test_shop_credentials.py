"""Credentials plugins use: the store's legacy API key, "anyone can create invoices", CORS."""

import base64
import hashlib
import json
import re

import pytest
import requests

from chalicelib.models import StoreModel, TokenModel
from tests.api_fixtures import root_only
from tests.pages_support import post_form, signed_in

INVOICE = {"price": 10, "currency": "USD"}


def generate_key(api_url: str, session, store) -> str:
    tokens_page = f"{api_url}/stores/{store.store_id}/tokens"
    page = post_form(session, tokens_page, f"{api_url}/stores/{store.store_id}/api-key", action="generate")
    assert page.status_code == 201, page.text
    return re.search(r'<code id="api-key">([^<]+)</code>', page.text).group(1)


def basic(key: str, user_only: bool = True) -> dict:
    """WHMCS sends base64(KEY); a user name with an empty password is base64(KEY:)."""
    return {"Authorization": "Basic " + base64.b64encode((key + ":" if user_only else key).encode()).decode()}


@pytest.fixture
def merchant_session(api_url, user):
    return signed_in(api_url, user.login)


@pytest.mark.parametrize("with_colon", [True, False], ids=["KEY:", "KEY"])
def test_an_api_key_acts_as_the_stores_merchant_unsigned(api_url, merchant_session, store, with_colon):
    key = generate_key(api_url, merchant_session, store)
    headers = {"Content-Type": "application/json", **basic(key, with_colon)}

    # WHMCS's plugin: POST /invoices/ with the key and no token, then GET /invoices/{id}.
    created = requests.post(api_url + "/invoices/", data=json.dumps(INVOICE), headers=headers)
    assert created.status_code == 200, created.text
    assert created.json()["facade"] == "merchant/invoice"
    invoice_id = created.json()["data"]["id"]
    fetched = requests.get(f"{api_url}/invoices/{invoice_id}", headers=headers).json()["data"]
    # The merchant's full view, not the public one.
    assert fetched["id"] == invoice_id and "buyer" in fetched and "token" in fetched
    assert [i["id"] for i in requests.get(api_url + "/invoices", headers=headers).json()["data"]] == [invoice_id]


@root_only
def test_the_key_is_stored_hashed_and_shown_once(api_url, merchant_session, store):
    key = generate_key(api_url, merchant_session, store)

    stored = StoreModel.get(store.store_id, consistent_read=True)
    assert stored.api_key == "apikey#" + hashlib.sha256(key.encode()).hexdigest()
    assert TokenModel.get(stored.api_key).store_id == store.store_id
    page = merchant_session.get(f"{api_url}/stores/{store.store_id}/tokens").text
    assert key not in page and stored.api_key not in page and "This store has an API key." in page


@root_only
def test_a_new_key_revokes_the_old_and_revoke_ends_it(api_url, merchant_session, store):
    first = generate_key(api_url, merchant_session, store)
    second = generate_key(api_url, merchant_session, store)
    post = lambda key: requests.post(api_url + "/invoices", data=json.dumps(INVOICE), headers=basic(key))  # noqa: E731

    assert post(first).status_code == 401
    assert post(second).status_code == 200
    tokens_page = f"{api_url}/stores/{store.store_id}/tokens"
    revoked = post_form(merchant_session, tokens_page, f"{api_url}/stores/{store.store_id}/api-key", action="revoke")
    assert revoked.status_code == 303
    assert post(second).status_code == 401
    assert post(second).json() == {"error": "Unknown API key: generate one on the store's Access tokens page"}


@root_only
def test_the_stored_hash_is_no_credential(api_url, merchant_session, store):
    generate_key(api_url, merchant_session, store)
    stored_hash = StoreModel.get(store.store_id, consistent_read=True).api_key

    as_token = requests.post(api_url + "/invoices", data=json.dumps({**INVOICE, "token": stored_hash}))
    as_key = requests.post(api_url + "/invoices", data=json.dumps(INVOICE), headers=basic(stored_hash))

    assert as_token.status_code == 401 and as_key.status_code == 401


@root_only
def test_another_users_store_key_cannot_be_made(api_url, merchant_session, other_store):
    response = merchant_session.post(f"{api_url}/stores/{other_store.store_id}/api-key", data={"action": "generate"})

    assert response.status_code in (403, 404)
    assert StoreModel.get(other_store.store_id).api_key is None


# Anyone can create invoices


def allow_anyone(api_url, session, store, allowed=True):
    fields = {"allowed": "on"} if allowed else {}
    tokens_page = f"{api_url}/stores/{store.store_id}/tokens"
    response = post_form(session, tokens_page, f"{api_url}/stores/{store.store_id}/public-invoices", **fields)
    assert response.status_code == 303


@pytest.mark.parametrize("where", ["query", "body"])
def test_a_store_that_allows_it_takes_unsigned_invoices(api_url, merchant_session, store, where):
    allow_anyone(api_url, merchant_session, store)
    query = {"storeId": store.store_id} if where == "query" else {}
    body = {**INVOICE, "orderId": "button-1", **({"storeId": store.store_id} if where == "body" else {})}

    response = requests.post(api_url + "/invoices", params=query, json=body, headers={"Origin": "https://shop.example"})

    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    created = response.json()
    assert created["facade"] == "public/invoice"
    # The public view: the buyer sees what to pay, not the merchant's fields.
    assert created["data"]["status"] == "new" and "token" not in created["data"] and "orderId" not in created["data"]


@root_only
def test_off_by_default_and_off_again(api_url, merchant_session, store):
    unsigned = lambda: requests.post(api_url + "/invoices", params={"storeId": store.store_id}, json=INVOICE)  # noqa: E731

    assert StoreModel.get(store.store_id).anyone_can_invoice is False
    assert unsigned().status_code == 401
    allow_anyone(api_url, merchant_session, store)
    assert unsigned().status_code == 200
    allow_anyone(api_url, merchant_session, store, allowed=False)
    assert unsigned().status_code == 401
    assert unsigned().json() == {
        "error": "This store does not let anyone create invoices: a pos or merchant token is required"
    }


@root_only
@pytest.mark.parametrize(
    "field", [{"notificationURL": "https://shop.example/ipn"}, {"notificationEmail": "victim@example.com"}]
)
def test_a_public_invoice_cannot_notify_anyone(api_url, merchant_session, store, field):
    allow_anyone(api_url, merchant_session, store)
    body = {**INVOICE, "orderId": "someone-elses-order", **field}

    response = requests.post(api_url + "/invoices", params={"storeId": store.store_id}, json=body)

    assert response.status_code == 400
    assert response.json() == {
        "error": "An invoice created without credentials cannot set notificationURL or notificationEmail"
    }


@root_only
def test_everything_else_still_needs_credentials(api_url, merchant_session, store, pos):
    allow_anyone(api_url, merchant_session, store)
    created = requests.post(api_url + "/invoices", params={"storeId": store.store_id}, json=INVOICE).json()["data"]
    query = {"storeId": store.store_id}

    assert requests.get(api_url + "/invoices", params=query).status_code == 401
    assert requests.delete(f"{api_url}/invoices/{created['id']}", params=query).status_code == 401
    assert requests.post(f"{api_url}/invoices/{created['id']}/notifications", params=query, json={}).status_code == 401
    # A bad token is refused, not taken for an anonymous caller.
    bad = requests.post(api_url + "/invoices", params=query, json={**INVOICE, "token": "wrong"})
    assert bad.status_code == 401
    # Nor is a store that does not exist.
    assert requests.post(api_url + "/invoices", params={"storeId": "nope"}, json=INVOICE).status_code == 401


@pytest.mark.parametrize("path", ["/invoices", "/rates", "/currencies"])
def test_browsers_may_call_the_public_endpoints(api_url, path):
    preflight = requests.options(
        api_url + path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST" if path == "/invoices" else "GET",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    response = requests.get(api_url + path, headers={"Origin": "https://shop.example"})

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"] or path != "/invoices"
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@root_only
def test_other_endpoints_send_no_cors_headers(api_url, merchant):
    assert "Access-Control-Allow-Origin" not in requests.get(api_url + "/tokens").headers


# A token's value, shown once


def show_value(api_url, session, store, reference):
    tokens_page = f"{api_url}/stores/{store.store_id}/tokens"
    return post_form(session, tokens_page, f"{api_url}/stores/{store.store_id}/tokens/show", token=reference)


@root_only
def test_a_paired_tokens_value_is_shown_once_to_paste_into_a_plugin(api_url, merchant_session, store, pair):
    from chalicelib.security import tokens

    client = pair("pos", signed=False)
    reference = tokens.reference(tokens.find(client.token))
    page = merchant_session.get(f"{api_url}/stores/{store.store_id}/tokens").text
    assert client.token not in page and "Show value once" in page

    shown = show_value(api_url, merchant_session, store, reference)

    assert shown.status_code == 200
    assert re.search(r'<code id="token-value">([^<]+)</code>', shown.text).group(1) == client.token
    assert f'data-copy="{client.token}"' in shown.text
    again = show_value(api_url, merchant_session, store, reference)
    assert again.status_code == 400 and client.token not in again.text
    assert "already been shown once" in again.text
    assert "Show value once" not in merchant_session.get(f"{api_url}/stores/{store.store_id}/tokens").text


@root_only
def test_a_pending_code_has_no_value_to_show(api_url, merchant_session, store):
    from chalicelib.security import tokens

    pending = tokens.create_pairing_code(store.store_id, "pos")

    shown = show_value(api_url, merchant_session, store, tokens.reference(pending))

    assert shown.status_code == 400 and pending.token not in shown.text


@root_only
def test_another_stores_token_cannot_be_shown(api_url, merchant_session, store, other_store):
    from chalicelib.security import tokens

    theirs = tokens.create_pairing_code(other_store.store_id, "pos")
    tokens.claim(theirs.pairing_code)
    response = merchant_session.post(
        f"{api_url}/stores/{store.store_id}/tokens/show", data={"token": tokens.reference(theirs)}
    )

    assert theirs.token not in response.text
