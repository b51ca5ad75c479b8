"""Endpoints the BitPay SDKs call: GET /currencies, DELETE an invoice, a resend with the invoice's own token."""

import json
import subprocess
import sys

import pytest
import requests

from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient
from tests.test_bitpay8 import bitpay8_path  # noqa: F401 (a fixture)

INVOICE = {"price": 10, "currency": "USD"}


# GET /currencies


def test_currencies_lists_what_the_rate_source_can_invoice_in(api_url):
    from chalicelib.payments.rates import get_rates

    response = requests.get(api_url + "/currencies")

    assert response.status_code == 200
    items = response.json()["data"]
    assert [item["code"] for item in items] == get_rates().currencies()
    usd = next(item for item in items if item["code"] == "USD")
    assert usd == {
        "code": "USD",
        "symbol": "$",
        "precision": 2,
        "name": "US Dollar",
        "plural": "US dollars",
        "alts": "usd",
        "minimum": 0.01,
        "sanctioned": False,
        "decimals": 2,
        "exchangePctFee": 100,
        "payoutEnabled": False,
        "payoutFields": [],
    }
    btc = next(item for item in items if item["code"] == "BTC")
    assert (btc["decimals"], btc["chain"], btc["minimum"]) == (8, "BTC", 1e-08)


@root_only
def test_bitpay8s_currency_model_reads_the_list(api_url, bitpay8_path):  # noqa: F811
    script = (
        "import json, sys\n"
        "from bitpay.models.currency import Currency\n"
        "print(json.dumps([Currency(**item).code for item in json.load(sys.stdin)['data']]))\n"
    )
    body = requests.get(api_url + "/currencies").text
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=body,
        env={"PYTHONPATH": str(bitpay8_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == [item["code"] for item in json.loads(body)["data"]]


# POST /invoices/{id}/notifications with the invoice's own token


def _resend(client: BitIdClient, invoice_id: str, token: str, *, signed: bool = True) -> requests.Response:
    return client.post(f"/invoices/{invoice_id}/notifications", {"token": token}, signed=signed, token=False)


@root_only
def test_resend_with_the_invoices_own_token_signed_by_the_merchant(merchant, clock, ipn_receiver, notifications_queue):
    from tests.payments_support import drain

    created = merchant.post("/invoices", {**INVOICE, "notificationURL": ipn_receiver.url + "/own"}).json()["data"]

    response = _resend(merchant, created["id"], created["token"])

    assert response.status_code == 200, response.text
    assert response.json() == {"data": "Success"}
    drain(notifications_queue, clock, {created["id"]})
    assert [body["id"] for body in ipn_receiver.accepted("/own")] == [created["id"]]


@root_only
def test_the_invoices_token_alone_proves_nothing(api_url, merchant, pair, other_store, ipn_receiver):
    created = merchant.post("/invoices", {**INVOICE, "notificationURL": ipn_receiver.url + "/x"}).json()["data"]
    stranger = BitIdClient(api_url)
    elsewhere = pair("merchant", store_id=other_store.store_id)

    assert _resend(merchant, created["id"], created["token"], signed=False).status_code == 401
    assert _resend(stranger, created["id"], created["token"]).status_code == 403
    assert _resend(elsewhere, created["id"], created["token"]).status_code == 403
    # Another invoice's token is no token at all.
    other = merchant.post("/invoices", INVOICE).json()["data"]
    assert _resend(merchant, created["id"], other["token"]).status_code == 401


@root_only
def test_a_revoked_merchant_key_cannot_resend_with_the_invoices_token(merchant, store, ipn_receiver):
    from chalicelib.security import tokens

    created = merchant.post("/invoices", {**INVOICE, "notificationURL": ipn_receiver.url + "/r"}).json()["data"]
    tokens.revoke(merchant.token, store.store_id)

    assert _resend(merchant, created["id"], created["token"]).status_code == 403


@root_only
def test_resend_with_a_merchant_token_still_works(merchant, ipn_receiver):
    created = merchant.post("/invoices", {**INVOICE, "notificationURL": ipn_receiver.url + "/m"}).json()["data"]

    assert _resend(merchant, created["id"], merchant.token).status_code == 200


# DELETE /invoices/{id}


def test_merchant_cancels_a_new_invoice(merchant, clock, ipn_receiver, notifications_queue):
    from chalicelib.models import InvoiceModel
    from tests.payments_support import drain

    body = {**INVOICE, "notificationURL": ipn_receiver.url + "/cancel", "fullNotifications": True}
    created = merchant.post("/invoices", body).json()["data"]

    response = merchant.delete(f"/invoices/{created['id']}")

    assert response.status_code == 200, response.text
    cancelled = response.json()["data"]
    assert (cancelled["status"], cancelled["isCancelled"]) == ("expired", True)
    fetched = merchant.get(f"/invoices/{created['id']}").json()["data"]
    assert (fetched["status"], fetched["isCancelled"]) == ("expired", True)
    assert created["isCancelled"] is False
    stored = InvoiceModel.get(created["id"])
    assert (stored.watch_network, stored.next_check) == (None, None)
    drain(notifications_queue, clock, {created["id"]})
    [notified] = ipn_receiver.accepted("/cancel")
    assert (notified["id"], notified["status"]) == (created["id"], "expired")
    # Cancelling again (a retried request) answers the same.
    again = merchant.delete(f"/invoices/{created['id']}").json()["data"]
    assert (again["status"], again["isCancelled"]) == ("expired", True)
    assert merchant.get("/invoices", {"status": "expired"}).json()["data"][0]["id"] == created["id"]


@root_only
def test_merchant_cancels_by_guid(merchant):
    created = merchant.post("/invoices", {**INVOICE, "guid": "order-81"}).json()["data"]

    response = merchant.delete("/invoices/guid/order-81")

    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == created["id"] and response.json()["data"]["isCancelled"] is True
    assert merchant.delete("/invoices/guid/no-such-guid").status_code == 404


@root_only
def test_an_invoice_with_a_payment_is_not_cancelled(merchant, chain, watch):
    created = merchant.post("/invoices", INVOICE).json()["data"]
    chain.pay(created["bitcoinAddress"], 1000)
    watch()

    response = merchant.delete(f"/invoices/{created['id']}")

    assert response.status_code == 400
    assert response.json() == {
        "error": "This invoice cannot be cancelled: it has received 0.00001000 BTC in 1 payment(s)"
    }
    fetched = merchant.get(f"/invoices/{created['id']}").json()["data"]
    assert (fetched["status"], fetched["exceptionStatus"], fetched["isCancelled"]) == ("new", "paidPartial", False)


@root_only
def test_a_cancellation_racing_the_watcher_loses_to_the_payment(merchant, chain, watch):
    from chalicelib.billing import cancellation
    from chalicelib.errors import BadRequest
    from chalicelib.models import InvoiceModel

    created = merchant.post("/invoices", INVOICE).json()["data"]
    read_before_the_payment = InvoiceModel.get(created["id"], consistent_read=True)
    chain.pay(created["bitcoinAddress"], created["paymentTotals"]["BTC"])
    watch()

    with pytest.raises(BadRequest, match="has received"):
        cancellation.cancel(read_before_the_payment)

    fetched = merchant.get(f"/invoices/{created['id']}").json()["data"]
    assert (fetched["status"], fetched["isCancelled"]) == ("paid", False)


@root_only
def test_only_a_new_invoice_by_its_merchant_is_cancelled(merchant, pos):
    created = pos.post("/invoices", INVOICE).json()["data"]

    assert pos.delete(f"/invoices/{created['id']}").status_code == 403
    assert merchant.delete(f"/invoices/{created['id']}", signed=False).status_code == 401
    assert merchant.delete("/invoices/NoSuchInvoice").status_code == 404
    assert merchant.delete(f"/invoices/{created['id']}").status_code == 200


_BITPAY8_SCRIPT = """
import json, sys
from bitpay.client import Client
from bitpay.clients.bitpay_client import BitPayClient
from bitpay.models.invoice.invoice import Invoice
from bitpay.utils.token_container import TokenContainer

base_url, pem_path, merchant_token = sys.argv[1:]
container = TokenContainer()
container.add_merchant(merchant_token)
client = Client(BitPayClient(base_url + "/", open(pem_path).read()), container)
first = client.create_invoice(Invoice(price=4, currency="USD", notification_url=sys.stdin.read().strip()))
second = client.create_invoice(Invoice(price=5, currency="USD", guid="b8-cancel"))
report = {
    "currencies": sorted(client.get_currencies()),
    "notified": client.request_invoice_notifications(first.id, first.token),
    "cancelled": client.cancel_invoice(first.id).model_dump(mode="json", by_alias=True, exclude_none=True),
    "by_guid": client.cancel_invoice_by_guid("b8-cancel").model_dump(mode="json", by_alias=True, exclude_none=True),
}
json.dump(report, sys.stdout)
"""


@root_only
def test_bitpay8_cancels_resends_and_reads_currencies(api_url, merchant, ipn_receiver, bitpay8_path, tmp_path):  # noqa: F811
    key_file = tmp_path / "client.pem"
    key_file.write_text(merchant.pem)

    completed = subprocess.run(
        [sys.executable, "-c", _BITPAY8_SCRIPT, api_url, str(key_file), merchant.token],
        input=ipn_receiver.url + "/b8",
        env={"PYTHONPATH": str(bitpay8_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    from chalicelib.payments.rates import get_rates

    assert report["currencies"] == get_rates().currencies()
    assert report["notified"] is True
    for name in ("cancelled", "by_guid"):
        assert (report[name]["status"], report[name]["isCancelled"]) == ("expired", True), name
