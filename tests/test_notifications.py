"""IPNs end to end: the watcher's changes reach a merchant's receiver through the (moto) SQS queue.

The receiver fails as often as a test says; `drain` hands each queued message to the
consumer at the time SQS would deliver it, moving the test clock as if the test waited.
"""

import json
import threading

import pytest
from btcpay import BTCPayClient
from requests import HTTPError

from chalicelib import jobs
from chalicelib.messaging import notifications
from chalicelib.models import NotificationModel
from chalicelib.security import tokens
from chalicelib.settings import get_settings
from tests.lambda_events import sqs_event
from tests.payments_support import HOUR, MINUTE, btc, drain, run_watcher_handlers, sats

NOTIFICATION_FIELDS = {
    "id", "url", "posData", "status", "price", "currency", "invoiceTime", "expirationTime", "currentTime",
    "exceptionStatus", "buyerFields", "paymentSubtotals", "paymentTotals", "exchangeRates", "amountPaid",
    "orderId", "transactionCurrency", "btcPrice", "btcPaid", "btcDue", "rate",
}  # fmt: skip


pytestmark = pytest.mark.parametrize("api_url", [""], indirect=True)


def form(body: dict) -> tuple:
    """A body as (event code, status) in the extended form, ("plain", status) in the plain one."""
    return (body["event"]["code"], body["data"]["status"]) if "event" in body else ("plain", body["status"])


def test_a_refused_notification_is_retried_on_its_own_and_holds_none_back(
    shop, chain, watch, clock, ipn_receiver, notifications_queue
):
    full = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/full", fullNotifications=True)
    extended = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/extended", extendedNotifications=True)
    ids = {full["id"], extended["id"]}
    drain(notifications_queue, clock, ids)
    ipn_receiver.received.clear()  # the extended invoice's invoice_created
    ipn_receiver.fail("/full", 1)
    ipn_receiver.fail("/extended", 2)

    started = clock.now
    for invoice in (full, extended):
        chain.pay(invoice["bitcoinAddress"], sats(invoice))
    watch()
    drain(notifications_queue, clock, ids, until=clock.now)
    assert sorted((path, status) for path, status, _ in ipn_receiver.received) == [
        ("/extended", 200),
        ("/extended", 500),
        ("/extended", 500),
        ("/full", 500),
    ]

    # The next changes happen while the first notifications wait for their retry: they go out at once.
    clock.advance(30_000)
    chain.mine()
    watch()
    clock.advance(10_000)
    chain.mine(5)
    watch()
    drain(notifications_queue, clock, ids, until=clock.now)
    assert [body["status"] for body in ipn_receiver.accepted("/full")] == ["confirmed", "complete"]

    drain(notifications_queue, clock, ids)
    assert [body["status"] for body in ipn_receiver.accepted("/full")] == ["confirmed", "complete", "paid"]
    # First deliveries in order (receivedPayment, paidInFull plain then extended, ...); the retries after.
    assert [(form(body), status) for path, status, body in ipn_receiver.received if path == "/extended"] == [
        ((1002, "paid"), 500),
        (("plain", "paid"), 500),
        ((1003, "paid"), 200),
        (("plain", "confirmed"), 200),
        ((1005, "confirmed"), 200),
        (("plain", "complete"), 200),
        ((1006, "complete"), 200),
        ((1002, "paid"), 200),
        (("plain", "paid"), 200),
    ]
    assert [status for path, status, _ in ipn_receiver.received if path == "/full"] == [500, 200, 200, 200]

    first_attempts = notifications.history(full["id"])[0]["attempts"]
    assert [(a["time"] - started, a["status"], a["error"]) for a in first_attempts] == [
        (0, 500, "HTTP 500"),
        (1 * MINUTE, 200, None),
    ]
    assert all(n["state"] == "delivered" for i in ids for n in notifications.history(i))
    assert notifications_queue.receive_all() == []


def test_a_first_delivery_leased_by_another_consumer_holds_back_the_ones_after_it(
    shop, chain, watch, clock, ipn_receiver, notifications_queue
):
    """First deliveries go out in order even when two consumers handle the invoice at once."""
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", fullNotifications=True)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    chain.mine()
    watch()  # paid, then confirmed: two first deliveries
    notifications_queue.purge()
    ipn_receiver.delay = 0.5
    first = threading.Thread(target=notifications.deliver_pending, args=(created["id"], clock.now))
    first.start()
    while NotificationModel.get(created["id"], 1, consistent_read=True).lease_until is None:
        pass  # until the first consumer holds the paid notification
    come_back = notifications.deliver_pending(created["id"], clock.now)
    # The second consumer left the confirmed notification alone while the paid one was in flight.
    assert first.is_alive()
    assert NotificationModel.get(created["id"], 2, consistent_read=True).attempts == []
    first.join(timeout=30)
    ipn_receiver.delay = 0
    assert come_back == clock.now + notifications.LEASE_MS
    assert [body["status"] for body in ipn_receiver.accepted("/ipn")] == ["paid", "confirmed"]


def test_without_full_notifications_only_confirmed_is_sent(
    api_url, shop, chain, watch, clock, ipn_receiver, notifications_queue
):
    created = shop.create_invoice(
        notificationURL=f"{ipn_receiver.url}/ipn", orderId="order-7", posData='{"cart": 7}', buyerEmail="b@example.com"
    )
    txid = chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    chain.mine()
    watch()
    confirmed_at = clock.now
    chain.mine(5)
    watch()
    drain(notifications_queue, clock, {created["id"]})

    [body] = ipn_receiver.accepted("/ipn")
    assert set(body) == NOTIFICATION_FIELDS
    assert body["status"] == "confirmed"
    assert body["currentTime"] == confirmed_at
    assert body["url"] == f"{api_url}/invoice?id={created['id']}"
    assert (body["orderId"], body["posData"], body["buyerFields"]) == (
        "order-7",
        '{"cart": 7}',
        {"buyerEmail": "b@example.com"},
    )
    assert (body["amountPaid"], body["transactionCurrency"], body["exceptionStatus"]) == (sats(created), "BTC", False)
    assert body["paymentTotals"] == {"BTC": sats(created)}
    assert (body["btcPaid"], body["btcDue"]) == (btc(sats(created)), "0.00000000")
    assert shop.get_invoice(created["id"])["transactions"][0]["txid"] == txid


def test_expired_partial_and_failed_to_confirm_notify_with_extended_notifications(
    shop, chain, watch, clock, ipn_receiver, notifications_queue
):
    partial = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/partial", extendedNotifications=True)
    unconfirmed = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/unconfirmed", fullNotifications=True)
    chain.pay(partial["bitcoinAddress"], 1_000)
    chain.pay(unconfirmed["bitcoinAddress"], sats(unconfirmed))
    watch()
    clock.now = partial["expirationTime"] + 1
    watch()
    clock.now = unconfirmed["expirationTime"] + 24 * HOUR + 1
    watch()
    drain(notifications_queue, clock, {partial["id"], unconfirmed["id"]})

    # Extended implies full: the plain body as well for the expiry events, not for receivedPayment.
    assert [
        (*form(body), (body.get("data") or body)["exceptionStatus"]) for body in ipn_receiver.accepted("/partial")
    ] == [
        (1001, "new", False),
        (1002, "new", "paidPartial"),
        ("plain", "expired", "paidPartial"),
        (1004, "expired", "paidPartial"),
        ("plain", "expired", "paidPartial"),
        (2000, "expired", "paidPartial"),
    ]
    plain_expiry = ipn_receiver.accepted("/partial")[2]
    assert plain_expiry["btcDue"] == btc(sats(partial) - 1_000)
    assert [body["status"] for body in ipn_receiver.accepted("/unconfirmed")] == ["paid", "invalid"]


def test_a_receiver_that_never_accepts_is_given_up_after_about_a_day(
    shop, chain, watch, clock, ipn_receiver, notifications_queue
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/down")
    ipn_receiver.fail("/down", 1_000)
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.mine()
    watch()
    drain(notifications_queue, clock, {created["id"]})

    [notification] = notifications.history(created["id"])
    attempts = notification["attempts"]
    assert notification["state"] == "failed"
    assert len(attempts) == len(notifications.RETRY_DELAYS_MINUTES) + 1
    assert 23 * HOUR < attempts[-1]["time"] - attempts[0]["time"] < 25 * HOUR
    assert created["id"] not in notifications.requeue_overdue(clock.now + 2 * HOUR)


def test_a_lost_queue_message_is_recovered_by_the_sweep(shop, chain, watch, clock, ipn_receiver, notifications_queue):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn")
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.mine()
    watch()
    notifications_queue.purge()
    assert drain(notifications_queue, clock, {created["id"]}) == 0

    assert created["id"] not in notifications.requeue_overdue(clock.now + notifications.OVERDUE_MS - 1)
    clock.advance(notifications.OVERDUE_MS + 1)
    assert created["id"] in notifications.requeue_overdue(clock.now)
    # Still undelivered a minute later (a consumer keeps failing, say): not queued again yet.
    assert created["id"] not in notifications.requeue_overdue(clock.now + MINUTE)
    drain(notifications_queue, clock, {created["id"]})
    assert [body["status"] for body in ipn_receiver.accepted("/ipn")] == ["confirmed"]


def test_two_consumers_with_the_same_message_post_once(shop, chain, watch, clock, ipn_receiver, notifications_queue):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn")
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.mine()
    watch()
    [message] = [m for m in notifications_queue.receive_all() if created["id"] in m["Body"]]
    ipn_receiver.delay = 0.3
    consumers = [
        threading.Thread(target=notifications.handle_message, args=(message["Body"],), kwargs={"now": clock.now})
        for _ in range(2)
    ]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(timeout=30)
    ipn_receiver.delay = 0
    drain(notifications_queue, clock, {created["id"]})
    assert len(ipn_receiver.received) == 1
    assert [n["state"] for n in notifications.history(created["id"])] == ["delivered"]


@pytest.fixture
def production_settings(monkeypatch):
    monkeypatch.setenv("ALLOW_PRIVATE_NOTIFICATION_URLS", "false")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_refused_notification_url_is_recorded_on_the_attempt(
    shop, chain, watch, clock, ipn_receiver, notifications_queue, production_settings
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn")
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.mine()
    watch()
    drain(notifications_queue, clock, {created["id"]}, until=clock.now)
    [attempt] = notifications.history(created["id"])[0]["attempts"]
    assert attempt["status"] is None
    assert "loopback, private or link-local" in attempt["error"]
    assert ipn_receiver.received == []


def test_merchant_resends_a_notification(api_url, shop, chain, watch, clock, ipn_receiver, notifications_queue):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", extendedNotifications=True)
    btcpay = BTCPayClient(host=api_url, pem=shop.client.pem, tokens={"merchant": shop.token})

    assert btcpay._signed_post_request(f"/invoices/{created['id']}/notifications", {}) == "Success"
    drain(notifications_queue, clock, {created["id"]})
    [created_event, resent] = ipn_receiver.accepted("/ipn")
    assert created_event["event"] == {"code": 1001, "name": "invoice_created"}
    assert resent["event"] == {"code": 1012, "name": "invoice_manuallyNotified"}
    assert resent["data"]["id"] == created["id"]
    assert resent["data"]["status"] == "new"


def test_resend_is_refused_without_a_notification_url_or_a_merchant_token(api_url, shop, store):
    created = shop.create_invoice()
    btcpay = BTCPayClient(host=api_url, pem=shop.client.pem, tokens={"merchant": shop.token})
    with pytest.raises(HTTPError) as no_url:
        btcpay._signed_post_request(f"/invoices/{created['id']}/notifications", {})
    assert no_url.value.response.status_code == 400
    assert no_url.value.response.json() == {"error": "This invoice has no notificationURL to notify"}
    with pytest.raises(HTTPError) as missing:
        btcpay._signed_post_request("/invoices/NoSuchInvoice/notifications", {})
    assert missing.value.response.status_code == 404

    pos = tokens.create_pairing_code(store.store_id, "pos")
    pos_client = BTCPayClient(host=api_url, pem=shop.client.pem)
    pos_token = tokens.claim(pos.pairing_code, pos_client.client_id).token
    with pytest.raises(HTTPError) as forbidden:
        pos_client._signed_post_request(f"/invoices/{created['id']}/notifications", {}, token=pos_token)
    assert forbidden.value.response.status_code == 403


def test_the_lambda_handlers_watch_and_deliver(shop, chain, ipn_receiver, notifications_queue, checks_queue):
    """The functions AWS invokes, with the events AWS sends, at the real time."""
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", transactionSpeed="high")
    chain.pay(created["bitcoinAddress"], sats(created))

    run_watcher_handlers(checks_queue)
    assert shop.get_invoice(created["id"])["status"] == "confirmed"

    for message in notifications_queue.receive_all():
        if created["id"] in message["Body"]:
            jobs.deliver_notifications(sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:notifications"), None)
        notifications_queue.delete(message)
    assert [body["status"] for body in ipn_receiver.accepted("/ipn")] == ["confirmed"]
    assert NotificationModel.get(created["id"], 1).state == NotificationModel.DELIVERED
    assert json.loads(NotificationModel.get(created["id"], 1).body)["status"] == "confirmed"
