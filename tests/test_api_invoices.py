"""Creating and reading invoices over HTTP: what clients send, what they get back, who may read what."""

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.billing import stores
from chalicelib.models import StoreModel
from chalicelib.payments.wallet import Wallet
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient

INVOICE = {"price": 10, "currency": "USD"}
EIGHT_DECIMALS = re.compile(r"\d+\.\d{8}")
NOT_FOUND = {"error": "Object not found"}


def receive_addresses(store, count: int) -> list[str]:
    """The first receive addresses of the store's wallet (BIP84 derivation is pinned in test_wallet.py)."""
    return Wallet.parse(store.wallet).addresses(0, count)


FULL_REQUEST = {
    "price": 25,
    "currency": "USD",
    "orderId": "PO-1001",
    "itemDesc": "Blue mug",
    "itemCode": "MUG-B",
    "posData": '{"cart": 7}',
    "notificationURL": "https://shop.example/ipn",
    "notificationEmail": "owner@shop.example",
    "redirectURL": "https://shop.example/thanks",
    "closeURL": "https://shop.example/cart",
    "guid": "a6a0b2a0-2c1c-4d3e-9f00-1a2b3c4d5e6f",
    "transactionSpeed": "high",
    "fullNotifications": True,
    "extendedNotifications": True,
    "physical": True,
    "buyer": {"name": "Ann Lee", "email": "ann@example.com", "country": "US", "notify": True},
}

# Every field of BitPay's invoice object (wire reference), with the exact JSON type clients expect.
FIELD_TYPES = {
    "id": str,
    "url": str,
    "status": str,
    "price": float,
    "currency": str,
    "orderId": str,
    "itemDesc": str,
    "itemCode": str,
    "posData": str,
    "invoiceTime": int,
    "expirationTime": int,
    "currentTime": int,
    "exceptionStatus": bool,
    "token": str,
    "guid": str,
    "transactionSpeed": str,
    "targetConfirmations": int,
    "redirectURL": str,
    "notificationURL": str,
    "buyer": dict,
    "paymentSubtotals": dict,
    "paymentTotals": dict,
    "paymentDisplayTotals": dict,
    "paymentDisplaySubTotals": dict,
    "exchangeRates": dict,
    "amountPaid": int,
    "displayAmountPaid": str,
    "transactions": list,
    "supportedTransactionCurrencies": dict,
    "paymentCodes": dict,
    "refundAddressRequestPending": bool,
    "lowFeeDetected": bool,
    "btcPrice": str,
    "btcDue": str,
    "btcPaid": str,
    "rate": float,
    "bitcoinAddress": str,
    "paymentUrls": dict,
    "addresses": dict,
}


def create(client: BitIdClient, body: dict | None = None, **options) -> dict:
    response = client.post("/invoices", INVOICE if body is None else body, **options)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def nulls(value, path="") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in nulls(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in nulls(item, f"{path}[{i}]")]
    return []


# Creating


@pytest.mark.parametrize("path", ["/invoices", "/invoices/"])
def test_merchant_creates_an_invoice(api_url, merchant, store, path):
    before = int(time.time() * 1000)
    response = merchant.post(path, {"price": "19.99", "currency": "EUR"})
    after = int(time.time() * 1000)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"facade", "data"} and body["facade"] == "merchant/invoice"
    invoice = body["data"]
    # 19.99 EUR at the fixed 60000 EUR/BTC: 33316.67 satoshis, rounded up.
    assert invoice["paymentSubtotals"] == invoice["paymentTotals"] == {"BTC": 33317}
    assert invoice["paymentDisplayTotals"] == invoice["paymentDisplaySubTotals"] == {"BTC": "0.00033317"}
    assert invoice["btcPrice"] == invoice["btcDue"] == "0.00033317" and invoice["btcPaid"] == "0.00000000"
    assert invoice["price"] == 19.99 and invoice["currency"] == "EUR"
    assert invoice["rate"] == 60000.0 and invoice["exchangeRates"] == {"BTC": {"EUR": 60000.0}}
    address = receive_addresses(store, 1)[0]
    assert invoice["bitcoinAddress"] == address and invoice["addresses"] == {"BTC": address}
    bip21 = f"bitcoin:{address}?amount=0.00033317"
    assert invoice["paymentCodes"] == {"BTC": {"BIP21": bip21}} and invoice["paymentUrls"] == {"BIP21": bip21}
    assert invoice["status"] == "new" and invoice["exceptionStatus"] is False
    assert invoice["url"] == f"{api_url}/invoice?id={invoice['id']}"
    assert before <= invoice["invoiceTime"] <= invoice["currentTime"] <= after
    assert invoice["expirationTime"] == invoice["invoiceTime"] + 15 * 60 * 1000
    assert invoice["transactionSpeed"] == "medium" and invoice["targetConfirmations"] == 1


def test_pos_creates_an_invoice(pos):
    response = pos.post("/invoices/", INVOICE)

    assert response.status_code == 200
    assert response.json()["facade"] == "pos/invoice"


def test_each_invoice_gets_the_next_address(merchant, store):
    assert [create(merchant)["bitcoinAddress"] for _ in range(2)] == receive_addresses(store, 2)


def test_expiration_follows_the_store_setting(merchant, store):
    store.update(actions=[StoreModel.invoice_expiration_minutes.set(60)])

    invoice = create(merchant)

    assert invoice["expirationTime"] - invoice["invoiceTime"] == 60 * 60 * 1000


def test_every_request_field_is_kept(merchant):
    invoice = create(merchant, FULL_REQUEST)

    assert invoice["price"] == 25.0
    for field in ("orderId", "itemDesc", "itemCode", "posData", "notificationURL", "notificationEmail", "guid"):
        assert invoice[field] == FULL_REQUEST[field], field
    for field in ("redirectURL", "closeURL", "fullNotifications", "extendedNotifications", "physical"):
        assert invoice[field] == FULL_REQUEST[field], field
    assert invoice["transactionSpeed"] == "high" and invoice["targetConfirmations"] == 0
    assert invoice["buyer"] == FULL_REQUEST["buyer"]


def test_invoice_object_has_every_reference_field_with_its_exact_type(merchant):
    invoice = create(merchant, FULL_REQUEST)

    assert {field: type(invoice.get(field)) for field in FIELD_TYPES} == FIELD_TYPES
    assert nulls(invoice) == []
    for field in ("invoiceTime", "expirationTime", "currentTime"):
        assert 10**12 < invoice[field] < 10**13, field  # milliseconds, not seconds
    for field in ("paymentSubtotals", "paymentTotals"):
        assert type(invoice[field]["BTC"]) is int
    for field in ("paymentDisplayTotals", "paymentDisplaySubTotals"):
        assert EIGHT_DECIMALS.fullmatch(invoice[field]["BTC"])
    for field in ("btcPrice", "btcDue", "btcPaid", "displayAmountPaid"):
        assert EIGHT_DECIMALS.fullmatch(invoice[field]), field
    assert type(invoice["exchangeRates"]["BTC"]["USD"]) is float
    assert invoice["supportedTransactionCurrencies"] == {"BTC": {"enabled": True}}
    assert invoice["transactions"] == [] and invoice["amountPaid"] == 0


def test_optional_fields_are_left_out_rather_than_null(merchant):
    invoice = create(merchant)

    assert nulls(invoice) == []
    for field in ("orderId", "itemDesc", "itemCode", "posData", "guid", "redirectURL", "notificationURL"):
        assert field not in invoice
    assert invoice["buyer"] == {}


def test_field_names_are_case_insensitive(merchant):
    invoice = create(
        merchant,
        {
            "PRICE": "5",
            "Currency": "usd",
            "orderID": "PO-7",
            "ITEMDESC": "Tea",
            "itemcode": "TEA",
            "NotificationUrl": "https://shop.example/ipn",
            "POSDATA": "ref-7",
            "TransactionSpeed": "low",
        },
    )

    assert (invoice["price"], invoice["currency"]) == (5.0, "USD")
    assert (invoice["orderId"], invoice["itemDesc"], invoice["itemCode"]) == ("PO-7", "Tea", "TEA")
    assert invoice["notificationURL"] == "https://shop.example/ipn" and invoice["posData"] == "ref-7"
    assert invoice["transactionSpeed"] == "low" and invoice["targetConfirmations"] == 6


@root_only
@pytest.mark.parametrize("price", [12.5, "12.5", "12.50", " 12.5 "])
def test_price_as_number_or_numeric_string(merchant, price):
    assert create(merchant, {"price": price, "currency": "USD"})["price"] == 12.5


BUYER = {
    "name": "Ann Lee",
    "address1": "1 Main St",
    "address2": "Apt 2",
    "locality": "Springfield",
    "region": "IL",
    "postalCode": "62701",
    "country": "US",
    "email": "ann@example.com",
    "phone": "+1 555 0100",
    "notify": False,
}


def test_nested_buyer(merchant):
    assert create(merchant, {**INVOICE, "buyer": BUYER})["buyer"] == BUYER


def test_flat_legacy_buyer_fields(merchant):
    flat = {
        "buyerName": "Ann Lee",
        "buyerAddress1": "1 Main St",
        "buyerAddress2": "Apt 2",
        "buyerCity": "Springfield",
        "buyerState": "IL",
        "buyerZip": "62701",
        "buyerCountry": "US",
        "buyerEmail": "ann@example.com",
        "buyerPhone": "+1 555 0100",
        "buyerNotify": True,
    }

    assert create(merchant, {**INVOICE, **flat})["buyer"] == {**BUYER, "notify": True}


def test_btcpay_buyer_field_names(merchant):
    buyer = create(merchant, {**INVOICE, "buyer": {"City": "Lyon", "state": "ARA", "zip": "69001"}})["buyer"]

    assert buyer == {"locality": "Lyon", "region": "ARA", "postalCode": "69001"}


def test_unknown_fields_are_ignored(merchant):
    invoice = create(
        merchant,
        {**INVOICE, "paymentCurrencies": ["BTC"], "acceptanceWindow": 1200000, "plugin": {"name": "x", "v": [1, 2]}},
    )

    assert invoice["price"] == 10.0
    assert not {"paymentCurrencies", "acceptanceWindow", "plugin"} & set(invoice)


def test_pos_data_object_is_kept_as_a_string(merchant):
    invoice = create(merchant, {**INVOICE, "posData": {"cart": 7, "items": ["a"]}})

    assert json.loads(invoice["posData"]) == {"cart": 7, "items": ["a"]}


@root_only
@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"price": None}, "price"),
        ({"price": 0}, "price"),
        ({"price": -5}, "price"),
        ({"price": "ten"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": True}, "price"),
        ({"price": [10]}, "price"),
        ({"price": "1e13"}, "price"),
        ({"currency": None}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"notificationURL": "ftp://shop.example/ipn"}, "notificationURL"),
        ({"notificationURL": "shop.example/ipn"}, "notificationURL"),
        ({"notificationURL": "https://"}, "notificationURL"),
        ({"notificationURL": ["https://shop.example"]}, "notificationURL"),
        ({"redirectURL": "javascript:alert(1)"}, "redirectURL"),
        ({"closeURL": "/cart"}, "closeURL"),
        ({"orderId": "x" * 101}, "orderId"),
        ({"orderId": ["PO-1"]}, "orderId"),
        ({"itemDesc": "x" * 1001}, "itemDesc"),
        ({"itemCode": "x" * 101}, "itemCode"),
        ({"posData": "x" * 10_001}, "posData"),
        ({"guid": "x" * 101}, "guid"),
        ({"fullNotifications": "yes"}, "fullNotifications"),
        ({"extendedNotifications": 2}, "extendedNotifications"),
        ({"physical": "maybe"}, "physical"),
        ({"notificationEmail": "owner"}, "notificationEmail"),
        ({"buyer": "Ann"}, "buyer"),
        ({"buyer": {"email": "ann"}}, "buyer email"),
        ({"buyer": {"name": "x" * 201}}, "buyer name"),
        ({"buyer": {"notify": "sometimes"}}, "buyer notify"),
        ({"buyerEmail": ["ann@example.com"]}, "buyer email"),
    ],
)
def test_each_bad_field_is_refused_by_name_and_stores_nothing(merchant, store, fields, error):
    response = merchant.post("/invoices", {**INVOICE, **fields})

    assert response.status_code == 400
    assert response.json()["error"].startswith(error)
    # Refused before anything was written: the next invoice still gets the store's first address.
    assert create(merchant)["bitcoinAddress"] == receive_addresses(store, 1)[0]


def test_missing_price_and_currency_are_named(merchant):
    assert merchant.post("/invoices", {"currency": "USD"}).json()["error"].startswith("price is required")
    assert merchant.post("/invoices", {"price": 1}).json()["error"].startswith("currency is required")


@root_only
@pytest.mark.parametrize(
    "body", ["[1, 2]", '"text"', "{", "{'price': 1}", b"\xff\xfe{}", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"]
)
def test_malformed_bodies_are_bad_requests(pos, body):
    # Sent unsigned, so the body is the first thing the service reads.
    response = pos.post("/invoices", body, signed=False)

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


@pytest.mark.parametrize("signed", [True, False])
def test_body_over_64_kib_is_refused(pair, signed):
    client = pair("pos", signed=signed)

    response = client.post("/invoices", {**INVOICE, "itemDesc": "x" * (64 * 1024)}, signed=signed)

    assert response.status_code == 400
    assert "64 KiB" in response.json()["error"]


def test_body_just_under_64_kib_is_read(pos):
    body = json.dumps({**INVOICE, "token": pos.token, "padding": ""})
    body = body.replace('"padding": ""', '"padding": "' + "x" * (64 * 1024 - len(body)) + '"')
    assert len(body) == 64 * 1024

    assert pos.post("/invoices", body).status_code == 200


def test_store_without_wallet_is_told_so(user, pair):
    bare = stores.create_store(user.login, "No wallet yet")
    client = pair("merchant", store_id=bare.store_id)

    response = client.post("/invoices", INVOICE)

    assert response.status_code == 400
    assert "no wallet" in response.json()["error"]


def test_fifty_concurrent_invoices_get_fifty_addresses(merchant, store):
    count = 50
    start = threading.Barrier(count)

    def create_one(_):
        start.wait()
        return merchant.post("/invoices", INVOICE)

    with ThreadPoolExecutor(max_workers=count) as pool:
        responses = list(pool.map(create_one, range(count)))

    assert [response.status_code for response in responses] == [200] * count
    addresses = {response.json()["data"]["bitcoinAddress"] for response in responses}
    # Distinct, and exactly the first fifty: no index skipped or used twice.
    assert addresses == set(Wallet.parse(store.wallet).addresses(0, count))
    assert StoreModel.get(store.store_id).next_address_index == count


# Idempotence


def test_guid_makes_creation_idempotent(merchant):
    first = create(merchant, {**INVOICE, "guid": "order-17"})
    retry = create(merchant, {**INVOICE, "price": 99, "guid": "order-17"})

    assert retry["id"] == first["id"] and retry["price"] == 10.0
    assert [invoice["id"] for invoice in merchant.get("/invoices").json()["data"]] == [first["id"]]


@pytest.mark.parametrize("path", ["/invoices/guid/order-18", "/invoices/guid/order-18/"])
def test_invoice_found_by_guid(merchant, path):
    invoice = create(merchant, {**INVOICE, "guid": "order-18"})

    response = merchant.get(path)

    assert response.status_code == 200
    assert response.json() == {"data": {**invoice, "currentTime": response.json()["data"]["currentTime"]}}


def test_same_guid_in_another_store_is_another_invoice(merchant, pair, other_store):
    other = pair("merchant", store_id=other_store.store_id)

    assert create(merchant, {**INVOICE, "guid": "g-1"})["id"] != create(other, {**INVOICE, "guid": "g-1"})["id"]
    assert other.get("/invoices/guid/g-1").json()["data"]["currency"] == "USD"


def test_guid_of_another_pos_client_is_not_handed_over(pair):
    first, second = pair("pos"), pair("pos")
    create(first, {**INVOICE, "guid": "till-1"})

    response = second.post("/invoices", {**INVOICE, "guid": "till-1"})

    assert response.status_code == 400
    assert "guid" in response.json()["error"]
    assert "till-1" not in response.text


def test_unknown_guid_is_not_found(merchant):
    response = merchant.get("/invoices/guid/never-used")

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# Reading


@pytest.mark.parametrize("path", ["/invoices/{id}", "/invoices/{id}/"])
def test_merchant_reads_its_invoice(merchant, path):
    invoice = create(merchant, FULL_REQUEST)

    response = merchant.get(path.format(id=invoice["id"]))

    assert response.status_code == 200
    assert response.json() == {"data": {**invoice, "currentTime": response.json()["data"]["currentTime"]}}


def test_another_stores_invoice_is_not_found(merchant, pair, other_store):
    invoice = create(merchant, {**INVOICE, "guid": "private"})
    other = pair("merchant", store_id=other_store.store_id)

    for path in (f"/invoices/{invoice['id']}", "/invoices/guid/private"):
        response = other.get(path)
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


def test_pos_reads_only_the_invoices_it_made(pair, merchant):
    till, other_till = pair("pos"), pair("pos", signed=False)
    invoice = create(till)

    assert till.get(f"/invoices/{invoice['id']}").status_code == 200
    assert merchant.get(f"/invoices/{invoice['id']}").status_code == 200
    hidden = other_till.get(f"/invoices/{invoice['id']}", signed=False)
    assert hidden.status_code == 404 and hidden.json() == NOT_FOUND


@pytest.mark.parametrize("token", [True, False])
def test_unknown_invoice_is_not_found(merchant, token):
    response = merchant.get("/invoices/NoSuchInvoice", token=token)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize("signed", [True, False])
def test_public_view_hides_merchant_and_buyer_data(api_url, merchant, signed):
    invoice = create(merchant, FULL_REQUEST)

    response = merchant.get(f"/invoices/{invoice['id']}", token=False, signed=signed)

    assert response.status_code == 200
    public = response.json()["data"]
    for hidden in ("posData", "buyer", "notificationURL", "notificationEmail", "token", "guid", "orderId", "itemCode"):
        assert hidden not in public, hidden
    shown = {key: value for key, value in invoice.items() if key in public and key != "currentTime"}
    assert shown == {key: value for key, value in public.items() if key != "currentTime"}
    assert public["paymentCodes"] == invoice["paymentCodes"] and public["status"] == "new"
