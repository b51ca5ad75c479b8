"""Invoices from creation to their last status: the watcher against the test chain, read back through a real client.

Invoices are made and read through the API by bitpay 2.6.1910's client (signed, with
a merchant token); the watcher runs at the test clock's time against the Esplora
test server. After each step the client must see BitPay's states and amounts.
"""

import threading
from decimal import Decimal

import pytest
import requests

from chalicelib.messaging import notifications
from chalicelib.payments import watcher
from tests.payments_support import HOUR, MINUTE, btc, sats

pytestmark = pytest.mark.parametrize("api_url", [""], indirect=True)


def watched_ids() -> set[str]:
    return {invoice.invoice_id for invoice in watcher.watched()}


def assert_state(invoice: dict, status: str, exception, paid: int) -> None:
    assert (invoice["status"], invoice["exceptionStatus"]) == (status, exception)
    assert invoice["amountPaid"] == paid
    assert invoice["btcPaid"] == btc(paid)
    assert invoice["btcDue"] == btc(max(sats(invoice) - paid, 0))


def test_exact_payment_goes_paid_confirmed_complete_then_leaves_the_watch(shop, chain, watch, clock):
    created = shop.create_invoice(transactionSpeed="medium")
    address, due = created["bitcoinAddress"], sats(created)
    assert due == 15_385  # $10 at the fixed $65,000
    watch()
    assert_state(shop.get_invoice(created["id"]), "new", False, 0)

    clock.advance(2 * MINUTE)
    txid = chain.pay(address, due)
    watch()
    paid = shop.get_invoice(created["id"])
    assert_state(paid, "paid", False, due)
    assert paid["transactions"] == [
        {"amount": due, "confirmations": 0, "receivedTime": clock.now, "time": clock.now, "txid": txid}
    ]

    clock.advance(10 * MINUTE)
    chain.mine()
    watch()
    confirmed = shop.get_invoice(created["id"])
    assert_state(confirmed, "confirmed", False, due)
    assert confirmed["transactions"][0]["confirmations"] == 1

    clock.advance(50 * MINUTE)
    chain.mine(5)
    watch()
    complete = shop.get_invoice(created["id"])
    assert_state(complete, "complete", False, due)
    assert complete["transactions"][0]["confirmations"] == 6

    assert created["id"] not in watched_ids()
    chain.requests.clear()
    watch()
    assert not any(address in path for path in chain.requests)


def test_partial_payment_then_the_rest(shop, chain, watch, clock, api_url):
    created = shop.create_invoice()
    address, due = created["bitcoinAddress"], sats(created)
    chain.pay(address, 6_000)
    watch()
    partial = shop.get_invoice(created["id"])
    assert_state(partial, "new", "paidPartial", 6_000)
    assert partial["paymentCodes"]["BTC"]["BIP21"] == f"bitcoin:{address}?amount={Decimal(due - 6_000) / 10**8}"
    polled = requests.get(f"{api_url}/invoice/status", params={"id": created["id"]}, timeout=5).json()
    assert "Partly paid" in polled.pop("statusRegion")
    assert polled == {
        "status": "new",
        "exceptionStatus": "paidPartial",
        "btcDue": btc(due - 6_000),
        "btcPaid": btc(6_000),
    }

    clock.advance(3 * MINUTE)
    chain.pay(address, due - 6_000)
    watch()
    assert_state(shop.get_invoice(created["id"]), "paid", False, due)
    assert len(shop.get_invoice(created["id"])["transactions"]) == 2

    chain.mine()
    watch()
    assert_state(shop.get_invoice(created["id"]), "confirmed", False, due)


def test_overpayment_is_paid_over(shop, chain, watch):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created) + 5_000)
    watch()
    invoice = shop.get_invoice(created["id"])
    assert_state(invoice, "paid", "paidOver", sats(created) + 5_000)
    assert invoice["btcDue"] == btc(0)


def test_never_paid_expires_and_is_watched_for_late_payments_for_the_window(shop, watch, clock):
    created = shop.create_invoice()
    watch()
    assert_state(shop.get_invoice(created["id"]), "new", False, 0)

    clock.now = created["expirationTime"] + 1
    watch()
    assert_state(shop.get_invoice(created["id"]), "expired", False, 0)
    assert created["id"] in watched_ids()

    clock.now = created["expirationTime"] + 24 * HOUR + 1
    watch()
    assert_state(shop.get_invoice(created["id"]), "expired", False, 0)
    assert created["id"] not in watched_ids()


def test_payment_after_expiration_is_recorded_as_late(shop, chain, watch, clock):
    created = shop.create_invoice()
    clock.now = created["expirationTime"] + 1
    watch()
    assert shop.get_invoice(created["id"])["status"] == "expired"

    # An expired invoice is looked at every few minutes, not every run.
    clock.advance(10 * MINUTE)
    txid = chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    late = shop.get_invoice(created["id"])
    assert_state(late, "expired", "paidLate", sats(created))
    assert [tx["txid"] for tx in late["transactions"]] == [txid]

    chain.mine()
    clock.advance(10 * MINUTE)
    watch()
    assert_state(shop.get_invoice(created["id"]), "expired", "paidLate", sats(created))
    assert shop.get_invoice(created["id"])["transactions"][0]["confirmations"] == 1


def test_fee_bump_replacement_counts_once(shop, chain, watch):
    created = shop.create_invoice()
    address, due = created["bitcoinAddress"], sats(created)
    original = chain.pay(address, due)
    watch()
    assert_state(shop.get_invoice(created["id"]), "paid", False, due)

    replacement = chain.replace(original, pays=((address, due),))
    watch()
    invoice = shop.get_invoice(created["id"])
    assert_state(invoice, "paid", False, due)
    assert [tx["txid"] for tx in invoice["transactions"]] == [replacement]

    chain.mine()
    watch()
    assert_state(shop.get_invoice(created["id"]), "confirmed", False, due)


def test_double_spent_payment_leaves_the_tally_and_the_invoice_fails(shop, chain, watch, clock):
    created = shop.create_invoice()
    address, due = created["bitcoinAddress"], sats(created)
    partial = chain.pay(address, 4_000)
    watch()
    assert_state(shop.get_invoice(created["id"]), "new", "paidPartial", 4_000)
    chain.replace(partial)
    watch()
    assert_state(shop.get_invoice(created["id"]), "new", False, 0)

    full = chain.pay(address, due)
    watch()
    assert_state(shop.get_invoice(created["id"]), "paid", False, due)
    chain.replace(full)
    watch()
    gone = shop.get_invoice(created["id"])
    assert_state(gone, "paid", False, 0)
    assert gone["transactions"] == []

    clock.now = created["expirationTime"] + 24 * HOUR + 1
    watch()
    assert_state(shop.get_invoice(created["id"]), "invalid", False, 0)
    assert created["id"] not in watched_ids()


def test_paid_but_never_confirmed_becomes_invalid(shop, chain, watch, clock):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    assert shop.get_invoice(created["id"])["status"] == "paid"

    clock.now = created["expirationTime"] + 24 * HOUR
    watch()
    assert shop.get_invoice(created["id"])["status"] == "paid"
    clock.advance(1)
    watch()
    assert_state(shop.get_invoice(created["id"]), "invalid", False, sats(created))
    assert created["id"] not in watched_ids()


def test_high_speed_is_confirmed_on_sight_and_low_speed_waits_for_six(shop, chain, watch):
    high = shop.create_invoice(transactionSpeed="high")
    low = shop.create_invoice(transactionSpeed="low")
    chain.pay(high["bitcoinAddress"], sats(high))
    chain.pay(low["bitcoinAddress"], sats(low))
    watch()
    assert shop.get_invoice(high["id"])["status"] == "confirmed"
    assert shop.get_invoice(low["id"])["status"] == "paid"
    chain.mine(5)
    watch()
    assert shop.get_invoice(low["id"])["status"] == "paid"
    chain.mine()
    watch()
    assert [shop.get_invoice(i["id"])["status"] for i in (high, low)] == ["complete", "complete"]


def test_two_watchers_racing_never_double_count(shop, chain, esplora, clock, ipn_receiver):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/race", fullNotifications=True)
    address, due = created["bitcoinAddress"], sats(created)
    chain.pay(address, 7_000)
    chain.pay(address, due - 7_000)
    # Both watchers read the invoice, then wait for each other before Esplora answers either.
    chain.hold(address, parties=2)
    reports = []

    # What two overlapping planner runs lead to: two checkers on the same invoice at once.
    def run():
        reports.append(watcher.check([created["id"]], now=clock.now, client=esplora))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sum(report.conflicts for report in reports) == 1
    assert sum(report.changed for report in reports) == 1
    invoice = shop.get_invoice(created["id"])
    assert_state(invoice, "paid", False, due)
    assert len(invoice["transactions"]) == 2
    assert [n["event"]["code"] for n in notifications.history(created["id"])] == [1003]


def test_many_watchers_racing_through_a_whole_lifecycle(shop, chain, esplora, clock):
    created = [shop.create_invoice(fullNotifications=True, notificationURL="http://127.0.0.1:9/") for _ in range(4)]
    ids = [invoice["id"] for invoice in created]
    for invoice in created:
        chain.pay(invoice["bitcoinAddress"], sats(invoice) // 2)
        chain.pay(invoice["bitcoinAddress"], sats(invoice) - sats(invoice) // 2)

    def race():
        threads = [threading.Thread(target=watcher.check, args=(ids, clock.now, esplora)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    race()
    chain.mine()
    race()
    chain.mine(5)
    race()
    for invoice in created:
        assert_state(shop.get_invoice(invoice["id"]), "complete", False, sats(invoice))
        assert [n["event"]["code"] for n in notifications.history(invoice["id"])] == [1003, 1005, 1006]


def test_status_endpoint_answers_for_unknown_and_missing_ids(api_url):
    assert requests.get(f"{api_url}/invoice/status", timeout=5).status_code == 400
    missing = requests.get(f"{api_url}/invoice/status", params={"id": "nope"}, timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"error": "Object not found"})


def test_an_esplora_outage_concludes_nothing(shop, chain, watch, clock):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.fail_next("/blocks/tip/height", *[503] * 5)
    assert watch().errors == 1
    chain.fail_next("/address/", *[503] * 5)
    assert watch().errors == 1
    assert_state(shop.get_invoice(created["id"]), "new", False, 0)
    assert created["id"] in watched_ids()

    report = watch()
    assert (report.errors, report.changed) == (0, 1)
    assert_state(shop.get_invoice(created["id"]), "paid", False, sats(created))
