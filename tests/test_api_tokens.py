"""Tokens and pairing over HTTP: both pairing flows, BitPay's response shape, facades, one SIN per store."""

import json
import re
import time
from datetime import UTC, datetime, timedelta

import base58
import boto3
import pytest
import requests

from chalicelib.errors import BadRequest
from chalicelib.models import TokenModel
from chalicelib.security import tokens
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient

BASE58_CODE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{7}")
INVOICE = {"price": 10, "currency": "USD"}


def raw_token_item(dynamodb: str, token: str) -> dict:
    """The token's item exactly as stored, read past the application's models."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb)
    return client.get_item(TableName=TokenModel.Meta.table_name, Key={"token": {"S": token}})["Item"]


def request_pairing(client: BitIdClient, facade: str = "merchant") -> dict:
    response = client.post("/tokens", {"id": client.sin, "facade": facade}, signed=False)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]


def claim(client: BitIdClient, code: str, *, with_id: bool = True) -> dict:
    body = {"id": client.sin, "pairingCode": code} if with_id else {"pairingCode": code}
    response = client.post("/tokens", body, signed=False, token=False)
    assert response.status_code == 200, response.text
    client.token = response.json()["data"][0]["token"]
    return response.json()["data"][0]


def expire(token: TokenModel) -> None:
    token.update(actions=[TokenModel.pairing_expiration.set(datetime.now(UTC) - timedelta(seconds=1))])


# Client-side pairing


def test_pairing_request_answers_in_bitpays_shape(api_url):
    client = BitIdClient(api_url)
    before = int(time.time() * 1000)
    response = client.post("/tokens", {"id": client.sin, "facade": "merchant", "label": "Shop plugin"}, signed=False)
    after = int(time.time() * 1000)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["data"] and len(body["data"]) == 1
    item = body["data"][0]
    assert set(item) == {"policies", "token", "facade", "label", "dateCreated", "pairingExpiration", "pairingCode"}
    assert item["policies"] == [{"policy": "id", "method": "inactive", "params": [client.sin]}]
    assert item["facade"] == "merchant"
    assert item["label"] == "Shop plugin"
    assert BASE58_CODE.fullmatch(item["pairingCode"])
    assert len(base58.b58decode(item["token"])) == 32
    assert type(item["dateCreated"]) is int and before <= item["dateCreated"] <= after
    assert type(item["pairingExpiration"]) is int
    assert abs(item["pairingExpiration"] - (item["dateCreated"] + 24 * 3600 * 1000)) < 2000


def test_pending_item_carries_a_dynamodb_ttl(api_url, dynamodb):
    item = request_pairing(BitIdClient(api_url))

    stored = raw_token_item(dynamodb, item["token"])
    assert int(stored["pairing_expiration"]["N"]) == item["pairingExpiration"] // 1000
    ttl = boto3.client("dynamodb", endpoint_url=dynamodb).describe_time_to_live(TableName=TokenModel.Meta.table_name)
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "pairing_expiration"}


def test_pending_token_does_nothing_until_approved(api_url, store, dynamodb):
    client = BitIdClient(api_url)
    item = request_pairing(client)
    client.token = item["token"]

    refused = client.post("/invoices", INVOICE)
    assert refused.status_code == 403
    assert item["pairingCode"] in refused.json()["error"]

    approved = tokens.approve(item["pairingCode"], store.store_id)
    assert approved.status == TokenModel.ACTIVE and approved.sin == client.sin
    assert "pairing_expiration" not in raw_token_item(dynamodb, item["token"])

    created = client.post("/invoices", INVOICE)
    assert created.status_code == 200, created.text
    assert created.json()["facade"] == "merchant/invoice"


def test_pos_pairing_request_approved_gives_a_pos_token(api_url, store):
    client = BitIdClient(api_url)
    item = request_pairing(client, "pos")
    tokens.approve(item["pairingCode"], store.store_id)
    client.token = item["token"]

    assert client.post("/invoices/", INVOICE).json()["facade"] == "pos/invoice"


@root_only
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "T" + "1" * 34, "facade": "merchant"}, "id"),
        ({"id": "not a sin", "facade": "merchant"}, "id"),
        ({"id": 12345, "facade": "merchant"}, "id"),
        ({"facade": "admin"}, "facade"),
        ({"label": "x" * 101}, "label"),
        ({"label": ["a list"]}, "label"),
    ],
)
def test_bad_pairing_requests_are_refused(api_url, body, field):
    client = BitIdClient(api_url)
    response = client.post("/tokens", {"id": client.sin, "facade": "merchant", **body}, signed=False)

    assert response.status_code == 400
    assert response.json()["error"].startswith(field)


def test_approving_twice_is_refused(api_url, store, other_store):
    item = request_pairing(BitIdClient(api_url))
    tokens.approve(item["pairingCode"], store.store_id)

    with pytest.raises(BadRequest, match="already been used"):
        tokens.approve(item["pairingCode"], other_store.store_id)
    assert tokens.find(item["token"]).store_id == store.store_id


# Server-side pairing: the merchant makes a code, a client claims it


def test_claiming_a_merchant_made_code(api_url, store, dynamodb):
    client = BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "merchant", "Back office").pairing_code

    item = claim(client, code)

    assert item["policies"] == [{"policy": "id", "method": "active", "params": [client.sin]}]
    assert item["facade"] == "merchant" and item["pairingCode"] == code and item["label"] == "Back office"
    assert type(item["dateCreated"]) is int
    # Still named, as BitPay and BTCPay answer a claim, though the stored token no longer expires.
    assert type(item["pairingExpiration"]) is int
    assert abs(item["pairingExpiration"] - (item["dateCreated"] + 24 * 3600 * 1000)) < 2000
    assert "pairing_expiration" not in raw_token_item(dynamodb, item["token"])
    assert client.post("/invoices", INVOICE).status_code == 200


def test_claimed_token_is_bound_to_the_claiming_key(api_url, store):
    client = BitIdClient(api_url)
    claim(client, tokens.create_pairing_code(store.store_id, "merchant").pairing_code)

    thief = BitIdClient(api_url, token=client.token)
    assert thief.post("/invoices", INVOICE).status_code == 401
    assert client.post("/invoices", INVOICE, signed=False).status_code == 401


def test_pos_code_claimed_without_id_is_used_unsigned(api_url, store):
    client = BitIdClient(api_url)
    item = claim(client, tokens.create_pairing_code(store.store_id, "pos").pairing_code, with_id=False)
    assert item["policies"] == [{"policy": "id", "method": "active", "params": []}]

    created = client.post("/invoices", INVOICE, signed=False)
    assert created.status_code == 200, created.text
    assert created.json()["facade"] == "pos/invoice"
    invoice_id = created.json()["data"]["id"]
    fetched = client.get(f"/invoices/{invoice_id}", signed=False)
    assert fetched.status_code == 200
    assert fetched.json()["data"]["id"] == invoice_id


def test_merchant_code_cannot_be_claimed_without_id(api_url, store):
    client = BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code

    response = client.post("/tokens", {"pairingCode": code}, signed=False)

    assert response.status_code == 400
    assert "id" in response.json()["error"]
    # The refusal leaves the code claimable by a client that does send its id.
    assert claim(client, code)["facade"] == "merchant"


def test_code_made_for_one_key_cannot_be_claimed_by_another(api_url, store):
    owner, other = BitIdClient(api_url), BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "merchant", sin=owner.sin).pairing_code

    response = other.post("/tokens", {"id": other.sin, "pairingCode": code}, signed=False)

    assert response.status_code == 400
    assert claim(owner, code)["policies"][0]["params"] == [owner.sin]


def test_a_code_works_once(api_url, store):
    first, second = BitIdClient(api_url), BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "pos").pairing_code
    claim(first, code)

    response = second.post("/tokens", {"id": second.sin, "pairingCode": code}, signed=False)

    assert response.status_code == 400
    assert response.json() == {"error": "The specified pairingCode has already been used"}


def test_an_approved_request_code_cannot_be_claimed(api_url, store):
    requester, claimant = BitIdClient(api_url), BitIdClient(api_url)
    item = request_pairing(requester)
    tokens.approve(item["pairingCode"], store.store_id)

    response = claimant.post("/tokens", {"id": claimant.sin, "pairingCode": item["pairingCode"]}, signed=False)

    assert response.status_code == 400


def test_a_pending_request_code_cannot_be_claimed(api_url):
    requester, claimant = BitIdClient(api_url), BitIdClient(api_url)
    code = request_pairing(requester)["pairingCode"]

    response = claimant.post("/tokens", {"id": claimant.sin, "pairingCode": code}, signed=False)

    assert response.status_code == 400
    assert "approved" in response.json()["error"]


def test_expired_code_is_refused(api_url, store):
    client = BitIdClient(api_url)
    pending = tokens.create_pairing_code(store.store_id, "merchant")
    expire(pending)

    response = client.post("/tokens", {"id": client.sin, "pairingCode": pending.pairing_code}, signed=False)

    assert response.status_code == 400
    assert response.json() == {"error": "The specified pairingCode has expired"}


def test_expired_request_cannot_be_approved_or_used(api_url, store):
    client = BitIdClient(api_url)
    item = request_pairing(client)
    expire(tokens.find(item["token"]))

    with pytest.raises(BadRequest, match="expired"):
        tokens.approve(item["pairingCode"], store.store_id)
    client.token = item["token"]
    assert client.post("/invoices", INVOICE).status_code == 401


@root_only
@pytest.mark.parametrize("code", ["Zz9Zz9Z", "short", "", 1234567, None])
def test_unknown_code_is_not_found(api_url, code):
    client = BitIdClient(api_url)

    response = client.post("/tokens", {"id": client.sin, "pairingCode": code}, signed=False)

    assert response.status_code == 404
    assert response.json() == {"error": "The specified pairingCode is not found"}


def test_tokens_route_answers_with_a_trailing_slash(api_url, store):
    client = BitIdClient(api_url)
    code = tokens.create_pairing_code(store.store_id, "pos").pairing_code

    response = client.post("/tokens/", {"id": client.sin, "pairingCode": code}, signed=False)

    assert response.status_code == 200
    assert response.json()["data"][0]["facade"] == "pos"


# A merchant asks for more tokens


@pytest.mark.parametrize("send_token", [True, False], ids=["with-token", "by-sin"])
def test_merchant_asks_for_a_pos_code_for_its_store(api_url, merchant, send_token):
    response = merchant.post("/tokens", {"facade": "pos", "label": "Till 2"}, token=send_token)
    assert response.status_code == 200, response.text
    item = response.json()["data"][0]
    assert item["facade"] == "pos" and item["label"] == "Till 2"
    assert BASE58_CODE.fullmatch(item["pairingCode"])
    assert type(item["pairingExpiration"]) is int

    till = BitIdClient(api_url)
    claim(till, item["pairingCode"], with_id=False)
    invoice_id = till.post("/invoices", INVOICE, signed=False).json()["data"]["id"]
    # Made for the merchant's store: the merchant reads the till's invoice.
    assert merchant.get(f"/invoices/{invoice_id}").status_code == 200


def test_merchant_naming_its_own_id_with_its_token_gets_a_code_for_its_store(api_url, merchant):
    response = merchant.post("/tokens", {"facade": "pos", "id": merchant.sin})
    assert response.status_code == 200, response.text
    code = response.json()["data"][0]["pairingCode"]

    till = BitIdClient(api_url)
    claim(till, code)
    invoice_id = till.post("/invoices", INVOICE).json()["data"]["id"]
    assert merchant.get(f"/invoices/{invoice_id}").status_code == 200


def test_pos_holder_cannot_ask_for_tokens(pos):
    response = pos.post("/tokens", {"facade": "pos"})

    assert response.status_code == 403
    assert "merchant" in response.json()["error"]


def test_signed_client_without_a_merchant_token_cannot_ask_for_tokens(api_url, pos):
    response = pos.post("/tokens", {"facade": "pos"}, token=False)

    assert response.status_code == 403
    assert "merchant" in response.json()["error"]


def test_unsigned_token_request_without_id_is_refused(api_url):
    response = BitIdClient(api_url).post("/tokens", {"facade": "pos"}, signed=False)

    assert response.status_code == 400
    assert response.json()["error"].startswith("id")


# Listing, one store per SIN, revocation


def test_get_tokens_lists_the_sins_active_tokens(api_url, store):
    client = BitIdClient(api_url)
    merchant_token = claim(client, tokens.create_pairing_code(store.store_id, "merchant").pairing_code)["token"]
    pos_token = claim(client, tokens.create_pairing_code(store.store_id, "pos").pairing_code)["token"]
    request_pairing(client, "merchant")  # pending: not listed

    response = client.get("/tokens", token=False)

    assert response.status_code == 200
    assert response.json() == {"data": [{"merchant": merchant_token}, {"pos": pos_token}]}
    assert client.get("/tokens/", token=False).json() == response.json()


def test_get_tokens_of_an_unpaired_key_is_empty(api_url):
    assert BitIdClient(api_url).get("/tokens").json() == {"data": []}


def test_get_tokens_must_be_signed(api_url, merchant):
    response = merchant.get("/tokens", signed=False)

    assert response.status_code == 401
    assert response.json()["error"]


def test_one_sin_pairs_with_one_store(api_url, store, other_store):
    client = BitIdClient(api_url)
    claim(client, tokens.create_pairing_code(store.store_id, "merchant").pairing_code)
    other_code = tokens.create_pairing_code(other_store.store_id, "merchant").pairing_code

    claimed = client.post("/tokens", {"id": client.sin, "pairingCode": other_code}, signed=False)
    assert claimed.status_code == 400
    assert "another store" in claimed.json()["error"]

    requested = request_pairing(client)
    with pytest.raises(BadRequest, match="another store"):
        tokens.approve(requested["pairingCode"], other_store.store_id)
    # The same store is fine.
    assert tokens.approve(requested["pairingCode"], store.store_id).status == TokenModel.ACTIVE


def test_revoked_token_stops_working_on_the_next_request(merchant, store):
    assert merchant.post("/invoices", INVOICE).status_code == 200

    tokens.revoke(merchant.token, store.store_id)

    response = merchant.post("/invoices", INVOICE)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]
    assert merchant.get("/tokens").json() == {"data": []}


# Facades and signatures


def test_pos_token_cannot_search_invoices(pos):
    response = pos.get("/invoices")

    assert response.status_code == 403
    assert "merchant" in response.json()["error"]


@pytest.mark.parametrize("path", ["/invoices", "/invoices/guid/abc"])
def test_invoice_routes_without_a_token_name_the_facade(api_url, path):
    response = BitIdClient(api_url).get(path)

    assert response.status_code == 401
    assert "merchant" in response.json()["error"]


def test_unknown_token_is_unauthorized(api_url):
    client = BitIdClient(api_url, token="NoSuchToken")

    response = client.post("/invoices", INVOICE)

    assert response.status_code == 401
    assert "Unknown token" in response.json()["error"]


def test_signature_over_another_body_is_refused(merchant):
    url = merchant.base_url + "/invoices"
    body = json.dumps({"price": 10, "currency": "USD", "token": merchant.token})
    headers = {"X-Identity": merchant.public_key, "X-Signature": merchant.sign(url + body.replace("10", "1"))}

    response = requests.post(url, data=body, headers=headers)

    assert response.status_code == 401
    assert "signature" in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{"X-Identity": "02" + "00" * 32, "X-Signature": "3006020101020101"}, {"X-Signature": "3006020101020101"}],
    ids=["not-a-point", "no-identity"],
)
def test_malformed_signature_headers_are_unauthorized(merchant, headers):
    response = requests.get(merchant.base_url + "/invoices?token=" + merchant.token, headers=headers)

    assert response.status_code == 401


def test_public_routes_ignore_stale_signature_headers(api_url, store):
    # bitpay 8 resends the previous request's signature on its unsigned calls.
    client = BitIdClient(api_url)
    stale = {"X-Identity": client.public_key, "X-Signature": client.sign("some other request")}
    code = tokens.create_pairing_code(store.store_id, "pos").pairing_code

    assert requests.get(api_url + "/rates", headers=stale).status_code == 200
    pairing = requests.post(api_url + "/tokens", json={"id": client.sin, "pairingCode": code}, headers=stale)
    assert pairing.status_code == 200
