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
    assert key not in page and "This store has an API key." in page


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
