"""Unmodified PyPI client libraries against the API over real HTTP, at the root and under /api.

btcpay-python 1.3.0 and bitpay 2.6.1910 both sign with python-ecdsa, which does not
normalise S: about half their signatures are high-S, which libsecp256k1 alone would refuse.
Every request they send is observed on its way out (requests' Session.send, wrapped without
changing anything) so the tests can count the signed ones and check which were high-S.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
from bitpay.client import Client as BitPayClient
from bitpay.exceptions import BitPayBitPayError
from btcpay import BTCPayClient
from btcpay.crypto import generate_privkey
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_der

from chalicelib.security import tokens
from tests.gateway import LocalApi

SIGNED_REQUESTS_PER_LIBRARY = 200


@dataclass(frozen=True)
class Sent:
    method: str
    url: str
    body: bytes
    identity: str | None
    signature: str | None
    status: int

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def high_s(self) -> bool:
        _, s = sigdecode_der(bytes.fromhex(self.signature), SECP256k1.order)
        return s > SECP256k1.order // 2

    def signature_verifies(self) -> bool:
        """Checked with python-ecdsa, which accepts high-S: proves the URL and body seen are what was signed."""
        key = VerifyingKey.from_string(bytes.fromhex(self.identity), curve=SECP256k1)
        signature = bytes.fromhex(self.signature)
        return key.verify(signature, self.url.encode() + self.body, hashfunc=hashlib.sha256, sigdecode=sigdecode_der)


@pytest.fixture
def wire(monkeypatch) -> list[Sent]:
    """Every request the libraries send in this test, in order, with the status it got."""
    sent: list[Sent] = []
    send = requests.Session.send

    def observed_send(session, request, **kwargs):
        response = send(session, request, **kwargs)
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        headers = request.headers
        sent.append(
            Sent(
                request.method,
                request.url,
                body,
                headers.get("X-Identity"),
                headers.get("X-Signature"),
                response.status_code,
            )
        )
        return response

    monkeypatch.setattr(requests.Session, "send", observed_send)
    return sent


@pytest.fixture(scope="module")
def both_api_urls(chalice_app):
    """The API at the root and under /api at once, for tests that must cover both in one run."""
    servers = [LocalApi(chalice_app), LocalApi(chalice_app, prefix="/api")]
    yield [server.url for server in servers]
    for server in servers:
        server.close()


def assert_all_signed_requests_accepted(sent: list[Sent], expected: int) -> None:
    signed = [request for request in sent if request.signed]
    assert len(signed) >= expected
    assert [request.status for request in signed] == [200] * len(signed)
    assert all(request.signature_verifies() for request in signed)


def assert_about_half_high_s(sent: list[Sent]) -> None:
    signed = [request for request in sent if request.signed]
    high = sum(request.high_s for request in signed)
    # For 200 signatures, falling outside this range by chance is less likely than 1 in 10^12.
    assert len(signed) * 0.25 < high < len(signed) * 0.75, f"{high} of {len(signed)} high-S"


def today(invoice: dict, pattern: str) -> str:
    return datetime.fromtimestamp(invoice["invoiceTime"] / 1000, UTC).strftime(pattern)


# btcpay-python 1.3.0


@pytest.fixture
def btcpay(api_url, store) -> BTCPayClient:
    """A client made the way BTCPay documents: from a pairing code the merchant made."""
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code
    return BTCPayClient.create_client(code=code, host=api_url)


def test_btcpay_claims_a_merchant_made_code(api_url, store):
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code

    client = BTCPayClient.create_client(code=code, host=api_url)

    assert list(client.tokens) == ["merchant"]
    assert tokens.find(client.tokens["merchant"]).sin == client.client_id


def test_btcpay_invoice_flow(btcpay, wire):
    created = btcpay.create_invoice(
        {
            "price": 12.5,
            "currency": "USD",
            "orderId": "BTCPAY-1",
            "itemCode": "SKU-1",
            "itemDesc": "Blue mug",
            "buyer": {"name": "Ann", "email": "ann@example.com"},
            "notificationURL": "https://shop.example/ipn",
        }
    )
    assert created["status"] == "new" and created["price"] == 12.5 and created["orderId"] == "BTCPAY-1"
    assert created["btcPrice"] == "0.00019231" and created["bitcoinAddress"].startswith("bc1q")

    fetched = btcpay.get_invoice(created["id"])
    assert {**fetched, "currentTime": 0} == {**created, "currentTime": 0}

    other = btcpay.create_invoice({"price": "3", "currency": "EUR", "orderId": "BTCPAY-2"})
    day = today(created, "%m/%d/%Y")  # the date format BTCPay-era clients send
    listed = btcpay.get_invoices(order_id="BTCPAY-1", status="new", item_code="SKU-1", date_start=day, date_end=day)
    assert [invoice["id"] for invoice in listed] == [created["id"]]
    assert [invoice["id"] for invoice in btcpay.get_invoices(limit=1)] == [other["id"]]
    assert [invoice["id"] for invoice in btcpay.get_invoices(offset=1)] == [created["id"]]

    rates = btcpay.get_rates()
    assert {"code": "USD", "name": "US Dollar", "rate": 65000.0} in rates
    assert btcpay.get_rate("eur") == 60000.0

    assert_all_signed_requests_accepted(wire, expected=8)
    assert any("/invoices/" in request.url and request.method == "POST" for request in wire)


def test_btcpay_errors_reach_the_caller(btcpay):
    with pytest.raises(requests.HTTPError) as refused:
        btcpay.create_invoice({"price": 1, "currency": "XYZ"})
    assert refused.value.response.status_code == 400
    assert refused.value.response.json() == {"error": "currency XYZ is not supported"}


def test_btcpay_two_hundred_signed_requests(both_api_urls, store, wire):
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code
    paired = BTCPayClient.create_client(code=code, host=both_api_urls[0])
    clients = [BTCPayClient(host=url, pem=paired.pem, tokens=paired.tokens) for url in both_api_urls]

    for round_number in range(SIGNED_REQUESTS_PER_LIBRARY // 8):
        for client in clients:
            invoice = client.create_invoice({"price": 1 + round_number, "currency": "USD", "orderId": "loop"})
            assert client.get_invoice(invoice["id"])["id"] == invoice["id"]
            assert client.get_invoices(order_id="loop", limit=2)[0]["id"] == invoice["id"]
            assert client.get_rate("USD") == 65000.0

    assert_all_signed_requests_accepted(wire, expected=SIGNED_REQUESTS_PER_LIBRARY)
    assert_about_half_high_s(wire)
    assert {request.url.split("/invoices")[0] for request in wire if "/invoices" in request.url} == set(both_api_urls)


# bitpay 2.6.1910


@pytest.fixture
def bitpay_pem() -> str:
    return generate_privkey()


def test_bitpay_client_side_pairing_and_invoices(api_url, store, bitpay_pem, wire):
    client = BitPayClient(api_uri=api_url, pem=bitpay_pem)

    code = client.create_token("merchant")
    assert not client.verify_tokens()  # pending until a person approves it
    tokens.approve(code, store.store_id)
    assert client.verify_tokens()

    created = client.create_invoice(
        {
            "price": 10,
            "currency": "USD",
            "token": client.tokens["merchant"],
            "posData": "order 42",
            "buyer": {"email": "ann@example.com"},
        }
    )
    assert created["status"] == "new" and created["posData"] == "order 42"

    full = client.get_invoice(created["id"], client.tokens["merchant"])
    assert full["id"] == created["id"] and full["buyer"] == {"email": "ann@example.com"}
    public = client.get_invoice(created["id"])
    assert public["id"] == created["id"] and public["paymentCodes"] == created["paymentCodes"]
    assert "posData" not in public and "buyer" not in public

    public_request = wire[-1]
    assert not public_request.signed and public_request.url == f"{api_url}/invoices/{created['id']}"
    assert_all_signed_requests_accepted(wire, expected=4)


def test_bitpay_pairs_a_pos_client_with_a_code(api_url, store, bitpay_pem):
    code = tokens.create_pairing_code(store.store_id, "pos").pairing_code
    client = BitPayClient(api_uri=api_url, pem=bitpay_pem)

    assert client.pair_pos_client(code) == {"pos": client.tokens["pos"]}
    invoice = client.create_invoice({"price": 5, "currency": "EUR", "token": client.tokens["pos"]})
    assert client.get_invoice(invoice["id"], client.tokens["pos"])["currency"] == "EUR"


def test_bitpay_reads_our_errors(api_url, bitpay_pem):
    client = BitPayClient(api_uri=api_url, pem=bitpay_pem)

    with pytest.raises(BitPayBitPayError, match="404: The specified pairingCode is not found"):
        client.pair_pos_client("Zz9Zz9Z")


def test_bitpay_two_hundred_signed_requests(both_api_urls, store, bitpay_pem, wire):
    pairing = BitPayClient(api_uri=both_api_urls[0], pem=bitpay_pem)
    tokens.approve(pairing.create_token("merchant"), store.store_id)
    clients = [BitPayClient(api_uri=url, pem=bitpay_pem, tokens=dict(pairing.tokens)) for url in both_api_urls]
    token = pairing.tokens["merchant"]

    for round_number in range(-(-SIGNED_REQUESTS_PER_LIBRARY // 6)):
        for client in clients:
            invoice = client.create_invoice({"price": 1 + round_number, "currency": "USD", "token": token})
            assert client.get_invoice(invoice["id"], token)["id"] == invoice["id"]
            assert client.verify_tokens()

    assert_all_signed_requests_accepted(wire, expected=SIGNED_REQUESTS_PER_LIBRARY)
    assert_about_half_high_s(wire)
    assert {request.url.split("/invoices")[0] for request in wire if "/invoices" in request.url} == set(both_api_urls)
