"""`make run` on its local regtest chain: the demo store, the test-chain banner, and the checkout's test buttons.

Against scripts/run_local.py itself (tests/local_stack.py); the deployed settings never have the buttons.
"""

import json
import re
import shlex
import subprocess

import pytest
import requests
from bitpay.client import Client

from chalicelib.errors import ServiceUnavailable
from chalicelib.models import InvoiceModel
from chalicelib.payments import test_chain
from chalicelib.settings import get_settings
from deploy.template import PARAMETERS
from tests.local_stack import ROOT
from tests.payments_support import sats

STATUS_FIELDS = ("status", "exceptionStatus", "btcPaid", "btcDue")


def _invoice(shop: Client, price: str = "10") -> dict:
    return shop.create_invoice({"price": price, "currency": "USD", "token": shop.tokens["merchant"]})


def _press(local_stack, invoice: dict, action: str, *, csrf: bool = True) -> requests.Response:
    """A buyer's browser without script: opens the checkout and presses one of the test-chain buttons."""
    browser = requests.Session()
    checkout = browser.get(invoice["url"])
    [token] = re.findall(r'name="csrf_token" value="([^"]+)"', checkout.text)
    form = {"id": invoice["id"], "control": action, "csrf_token": token if csrf else "forged"}
    return browser.post(f"{local_stack.url}/invoice/test-chain", data=form, allow_redirects=False)


def _status(local_stack, invoice: dict) -> tuple:
    answer = requests.get(f"{local_stack.url}/invoice/status", params={"id": invoice["id"]}).json()
    return tuple(answer[field] for field in STATUS_FIELDS)


def test_make_run_serves_a_demo_store_on_regtest_and_every_page_says_test_chain(local_stack, demo_shop):
    assert "Test chain (regtest)" in requests.get(f"{local_stack.url}/login").text
    stores = local_stack.cli("list-stores", "--owner", "admin")
    assert local_stack.demo_store in stores and "Demo store" in stores

    # The command make run prints makes a first invoice without any client library.
    [command] = re.findall(r"An invoice to pay: (curl .*)", local_stack.log.read_text())
    made = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True, timeout=30)
    assert json.loads(made.stdout)["data"]["url"].startswith(f"{local_stack.url}/invoice?id=")

    invoice = _invoice(demo_shop)
    assert invoice["bitcoinAddress"].startswith("bcrt1q")
    page = requests.get(invoice["url"]).text
    assert "Test chain (regtest)" in page
    assert "Sample rate: 65,000.00 USD/BTC" in page
    assert 'action="' + local_stack.url + '/invoice/test-chain"' in page


def test_the_checkout_buttons_pay_part_then_the_rest_and_mine_it_to_confirmed(local_stack, demo_shop):
    invoice = _invoice(demo_shop)
    due = invoice["paymentTotals"]["BTC"]
    assert _status(local_stack, invoice) == ("new", False, "0.00000000", invoice["btcDue"])

    answer = _press(local_stack, invoice, "pay-part")
    assert answer.status_code == 303 and answer.headers["Location"] == invoice["url"]
    half = f"{due // 2 / 1e8:.8f}"
    assert _status(local_stack, invoice)[:3] == ("new", "paidPartial", half)

    _press(local_stack, invoice, "pay")
    assert _status(local_stack, invoice) == ("paid", False, f"{due / 1e8:.8f}", "0.00000000")
    refused = _press(local_stack, invoice, "pay")
    assert refused.status_code == 400 and "Nothing is due" in refused.text

    _press(local_stack, invoice, "mine")
    assert _status(local_stack, invoice)[0] == "confirmed"  # transactionSpeed medium: one block


def test_expire_now_expires_through_the_watcher_which_then_sees_a_late_payment(local_stack, demo_shop):
    invoice = _invoice(demo_shop)
    assert _press(local_stack, invoice, "expire").status_code == 303
    assert _status(local_stack, invoice)[:2] == ("expired", False)
    read = demo_shop.get_invoice(invoice["id"], token=demo_shop.tokens["merchant"])
    assert read["expirationTime"] < read["currentTime"]
    # The watcher's check after the expiry was answered: a payment now is late, by the status rules.
    _press(local_stack, invoice, "pay")
    assert _status(local_stack, invoice)[:2] == ("expired", "paidLate")
    again = _press(local_stack, invoice, "expire")
    assert again.status_code == 400 and "Only a new invoice can expire" in again.text


def test_the_buttons_refuse_a_forged_form_and_an_unknown_action(local_stack, demo_shop):
    invoice = _invoice(demo_shop)
    assert _press(local_stack, invoice, "pay", csrf=False).status_code == 403
    assert _press(local_stack, invoice, "print-money").status_code == 400
    assert _status(local_stack, invoice)[:3] == ("new", False, "0.00000000")


def test_the_local_chain_refuses_bad_control_requests(local_stack):
    chain = re.search(r"Test chain \(regtest\) on (\S+):", local_stack.log.read_text()).group(1)
    for path, body in [("pay", {"address": "bcrt1q", "amount": 0}), ("pay", {"amount": 5}), ("mine", {"blocks": 0})]:
        answer = requests.post(f"{chain}/control/{path}", data=json.dumps(body))
        assert answer.status_code == 400, (path, body)


def test_a_deployed_stack_has_no_test_chain_buttons(chalice_app, api_url, monkeypatch):
    """The route exists only on regtest against the local chain: never with a stage's deployed settings."""
    assert "/invoice/test-chain" not in chalice_app.routes
    assert requests.post(f"{api_url}/invoice/test-chain", data={"id": "x", "control": "pay"}).status_code in (
        403,
        404,
        405,
    )
    # A stack runs on what its BitcoinNetwork parameter allows, never regtest, and is never told of a local chain.
    assert "regtest" not in PARAMETERS["BitcoinNetwork"]["AllowedValues"]
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage, settings in config["stages"].items():
        if stage == "local":
            continue
        for name in list(settings["environment_variables"]) + ["LOCAL_CHAIN_URL", "ESPLORA_URL", "BITCOIN_NETWORK"]:
            monkeypatch.delenv(name, raising=False)
        for name, value in settings["environment_variables"].items():
            monkeypatch.setenv(name, value)
        # The template's BitcoinNetwork allows main, test and signet only.
        for network in ("main", "test", "signet"):
            monkeypatch.setenv("BITCOIN_NETWORK", network)
            get_settings.cache_clear()
            assert not get_settings().test_chain_controls, (stage, network)
    # Only on regtest, even against the local chain; and regtest alone is not enough: the watcher must ask it.
    monkeypatch.setenv("LOCAL_CHAIN_URL", "http://127.0.0.1:3002")
    monkeypatch.setenv("ESPLORA_URL", "http://127.0.0.1:3002")
    get_settings.cache_clear()
    assert not get_settings().test_chain_controls
    monkeypatch.setenv("BITCOIN_NETWORK", "regtest")
    monkeypatch.setenv("ESPLORA_URL", "http://electrs.example:3002")
    get_settings.cache_clear()
    assert not get_settings().test_chain_controls
    monkeypatch.setenv("ESPLORA_URL", "http://127.0.0.1:3002")
    get_settings.cache_clear()
    assert get_settings().test_chain_controls
    monkeypatch.undo()
    get_settings.cache_clear()


def test_expire_now_loses_to_a_watcher_that_credited_a_payment_meanwhile(
    shop, chain, watch, esplora_server, monkeypatch
):
    """Expire now moves the expiry of the invoice it read, conditioned on it: never of one paid since."""
    created = shop.create_invoice()
    read_by_the_button = InvoiceModel.get(created["id"], consistent_read=True)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    for name, value in {"BITCOIN_NETWORK": "regtest", "LOCAL_CHAIN_URL": esplora_server.url}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ServiceUnavailable):
            test_chain.run(read_by_the_button, "expire")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    after = shop.get_invoice(created["id"])
    assert (after["status"], after["expirationTime"]) == ("paid", created["expirationTime"])


def test_the_signed_in_merchant_sees_the_banner_and_a_sample_rate_and_can_press_the_buttons(local_stack, demo_shop):
    invoice = _invoice(demo_shop)
    merchant = requests.Session()
    [token] = re.findall(r'name="csrf_token" value="([^"]+)"', merchant.get(f"{local_stack.url}/login").text)
    form = {"login": "admin", "password": local_stack.admin_password, "csrf_token": token, "next": "/stores"}
    assert merchant.post(f"{local_stack.url}/login", data=form).status_code == 200
    page = merchant.get(f"{local_stack.url}/stores/{local_stack.demo_store}/invoices/{invoice['id']}").text
    assert "Test chain (regtest)" in page and "USD/BTC (a sample rate)" in page

    # Signed in, the checkout's form carries the session's token, and the button takes it.
    [token] = re.findall(r'name="csrf_token" value="([^"]+)"', merchant.get(invoice["url"]).text)
    form = {"id": invoice["id"], "control": "expire", "csrf_token": token}
    assert merchant.post(f"{local_stack.url}/invoice/test-chain", data=form, allow_redirects=False).status_code == 303
    assert _status(local_stack, invoice)[0] == "expired"
