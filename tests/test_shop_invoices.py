"""Invoices as the legacy plugins and BitPay SDKs send them: speeds, form bodies, tax, placeholders, amounts."""

import json
from urllib.parse import urlencode

import pytest

from chalicelib.billing import stores
from chalicelib.payments.wallet import Wallet
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient
from tests.payments_support import sats

INVOICE = {"price": 10, "currency": "USD"}


def create(client: BitIdClient, **fields) -> dict:
    response = client.post("/invoices", {**INVOICE, **fields})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def post_form(client: BitIdClient, body: str, content_type="application/x-www-form-urlencoded"):
    """A signed POST whose body is exactly `body`, as PHP's curl sends a string."""
    import requests

    url = client.base_url + "/invoices"
    headers = {
        "Content-Type": content_type,
        "X-Identity": client.public_key,
        "X-Signature": client.sign(url + body),
    }
    return requests.post(url, data=body.encode(), headers=headers)


# transactionSpeed


@pytest.mark.parametrize(("speed", "target"), [("high", 0), ("medium", 1), ("low-medium", 2), ("low", 6), ("LOW", 6)])
def test_each_bitpay_speed_sets_its_confirmations(merchant, speed, target):
    invoice = create(merchant, transactionSpeed=speed)

    assert (invoice["transactionSpeed"], invoice["targetConfirmations"]) == (speed.lower(), target)


@root_only
@pytest.mark.parametrize("speed", ["default", "fast", "", ["high"], {"high": 1}, 3])
def test_any_other_speed_means_the_stores_own(merchant, store, speed):
    store.update(actions=[type(store).transaction_speed.set("low")])

    invoice = create(merchant, transactionSpeed=speed)

    assert (invoice["transactionSpeed"], invoice["targetConfirmations"]) == ("low", 6)


@root_only
def test_low_medium_invoice_confirms_at_two_confirmations(api_url, store, chain, watch):
    from tests.payments_support import pair_merchant

    shop = pair_merchant(api_url, store)
    invoice = shop.create_invoice(transactionSpeed="low-medium")
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    chain.mine(1)
    watch()
    assert shop.get_invoice(invoice["id"])["status"] == "paid"
    chain.mine(1)
    watch()
    assert shop.get_invoice(invoice["id"])["status"] == "confirmed"


def test_a_store_may_choose_low_medium(store):
    settings = {"name": "Shop", "default_currency": "USD", "invoice_expiration_minutes": "15"}

    stores.update_settings(store, {**settings, "transaction_speed": "low-medium", "wallet": store.wallet})

    assert type(store).get(store.store_id).transaction_speed == "low-medium"


# Form bodies


def test_a_php_form_body_is_read_like_json(merchant):
    # What http_build_query makes of the WooCommerce plugin's array (true as "1", nested buyer[...]).
    body = urlencode(
        {
            "price": "12.50",
            "currency": "EUR",
            "orderID": "WC-77",
            "fullNotifications": "1",
            "extendedNotifications": "0",
            "transactionSpeed": "default",
            "buyer[name]": "Ann Lee",
            "buyer[email]": "ann@example.com",
            "buyer[notify]": "1",
            "token": merchant.token,
        }
    )

    response = post_form(merchant, body)

    assert response.status_code == 200, response.text
    invoice = response.json()["data"]
    assert (invoice["price"], invoice["currency"], invoice["orderId"]) == (12.5, "EUR", "WC-77")
    assert invoice["fullNotifications"] is True and invoice["extendedNotifications"] is False
    assert invoice["buyer"] == {"name": "Ann Lee", "email": "ann@example.com", "notify": True}
    assert response.json()["facade"] == "merchant/invoice"


@root_only
def test_json_labelled_as_a_form_is_still_json(merchant):
    # PHP's curl gives a string body without a Content-Type header the form type.
    body = json.dumps({"price": 3, "currency": "USD", "token": merchant.token})

    response = post_form(merchant, body)

    assert response.status_code == 200, response.text
    assert response.json()["data"]["price"] == 3.0


@root_only
def test_a_form_is_signed_over_its_raw_body(merchant):
    body = urlencode({"price": "5", "currency": "USD", "token": merchant.token})
    url = merchant.base_url + "/invoices"
    import requests

    forged = requests.post(
        url,
        data=body.replace("price=5", "price=1").encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Identity": merchant.public_key,
            "X-Signature": merchant.sign(url + body),
        },
    )

    assert forged.status_code == 401


@root_only
@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("price=1&price[x]=2&currency=USD", "Form field 'price' is both a value and a group"),
        ("price[x]=2&price=1&currency=USD", "Form field 'price' is both a value and a group"),
        ("a]b=1", "Form field name"),
        ("price=abc&currency=USD", "price must be a number"),
    ],
)
def test_bad_forms_are_named(merchant, body, error):
    response = post_form(merchant, f"{body}&token={merchant.token}")

    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


# taxIncluded, price, amounts


def test_tax_included_is_kept_and_defaults_to_zero(merchant):
    assert create(merchant)["taxIncluded"] == 0
    assert create(merchant, taxIncluded="1.5")["taxIncluded"] == 1.5


@root_only
@pytest.mark.parametrize(
    ("tax", "error"), [(-1, "taxIncluded must be from 0"), (11, "taxIncluded must be from 0"), ("x", "taxIncluded")]
)
def test_bad_tax_included_is_refused(merchant, tax, error):
    response = merchant.post("/invoices", {**INVOICE, "taxIncluded": tax})

    assert response.status_code == 400 and response.json()["error"].startswith(error)


@pytest.mark.parametrize("price", [{}, {"price": None}, {"price": ""}], ids=["absent", "null", "empty"])
def test_no_price_is_refused_clearly(merchant, price):
    response = merchant.post("/invoices", {"currency": "USD", **price})

    assert response.status_code == 400
    assert response.json() == {
        "error": "price is required: paylambda makes invoices for a fixed price only (no top-up invoices)"
    }


@root_only
def test_underpaid_and_overpaid_amounts_follow_bitpay(api_url, store, chain, watch):
    from tests.payments_support import pair_merchant

    shop = pair_merchant(api_url, store)
    invoice = shop.create_invoice()
    due = sats(invoice)
    assert "underpaidAmount" not in invoice and "overpaidAmount" not in invoice
    assert invoice["btcDue"] == f"{due / 1e8:.8f}"

    chain.pay(invoice["bitcoinAddress"], due - 1000)
    watch()
    partial = shop.get_invoice(invoice["id"])
    assert partial["exceptionStatus"] == "paidPartial"
    assert partial["underpaidAmount"] == 0.00001 and "overpaidAmount" not in partial
    assert partial["btcDue"] == "0.00001000"

    chain.pay(invoice["bitcoinAddress"], 3000)
    watch()
    over = shop.get_invoice(invoice["id"])
    assert over["exceptionStatus"] == "paidOver"
    assert over["overpaidAmount"] == 0.00002 and "underpaidAmount" not in over
    assert over["btcDue"] == "0.00000000"


# Placeholders


def test_placeholders_are_filled_in_redirect_and_notification_urls(merchant):
    invoice = create(
        merchant,
        orderId="WC 77/a",
        redirectURL="https://shop.example/order/{OrderId}/thanks?invoice={InvoiceId}",
        notificationURL="https://shop.example/ipn?order={orderid}",
    )

    assert invoice["redirectURL"] == f"https://shop.example/order/WC%2077%2Fa/thanks?invoice={invoice['id']}"
    assert invoice["notificationURL"] == "https://shop.example/ipn?order=WC%2077%2Fa"


@root_only
def test_close_url_is_taken_as_typed(merchant):
    # BTCPay fills placeholders in the redirect and notification URLs only.
    assert create(merchant, closeURL="https://shop.example/{OrderId}")["closeURL"] == "https://shop.example/{OrderId}"


@root_only
def test_placeholders_in_the_host_are_still_checked(merchant, store):
    # No orderId: the URL filled is https:///x, which has no host.
    response = merchant.post("/invoices", {**INVOICE, "redirectURL": "https://{OrderId}/x"})

    assert response.status_code == 400 and response.json()["error"].startswith("redirectURL")
    # Refused before an address was reserved.
    assert create(merchant)["bitcoinAddress"] == Wallet.parse(store.wallet).address(0)


@root_only
def test_notifications_go_to_the_filled_url(api_url, store, chain, watch, ipn_receiver, clock, notifications_queue):
    from tests.payments_support import drain, pair_merchant

    shop = pair_merchant(api_url, store)
    invoice = shop.create_invoice(orderId="77", notificationURL=ipn_receiver.url + "/ipn/{OrderId}/{InvoiceId}")
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    chain.mine(1)
    watch()
    drain(notifications_queue, clock, {invoice["id"]})

    assert invoice["notificationURL"] == f"{ipn_receiver.url}/ipn/77/{invoice['id']}"
    assert [body["id"] for body in ipn_receiver.accepted(f"/ipn/77/{invoice['id']}")] == [invoice["id"]]
