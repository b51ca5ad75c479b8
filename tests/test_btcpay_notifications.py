"""Notifications as BTCPay sends them: its event codes, both body forms, signatures, emails, the merchant's marks.

Through HTTP: a BitPay client makes the invoices, the watcher sees payments on the test
chain, the consumer delivers through the (moto) SQS queue to the IPN receiver, a real SMTP
server or moto's SES, and the merchant acts on the pages.
"""

import hashlib
import hmac
import json
import re

import pytest
import requests

from chalicelib.billing import marking
from chalicelib.errors import BadRequest
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel
from tests.api_fixtures import root_only
from tests.pages_support import post_form, signed_in, text_of
from tests.payments_support import HOUR, MINUTE, SENDER, btc, drain, sats
from tests.test_notifications import form


@pytest.fixture
def owner(api_url, user):
    return signed_in(api_url, user.login)


@root_only
def test_a_shop_asking_for_both_forms_gets_every_event_extended_and_the_status_events_plain(
    shop, chain, watch, ipn_receiver, notifications_queue, clock
):
    """WooCommerce's plugin sets fullNotifications and extendedNotifications, and acts on the plain bodies."""
    created = shop.create_invoice(
        notificationURL=f"{ipn_receiver.url}/woo", fullNotifications=True, extendedNotifications=True
    )
    chain.pay(created["bitcoinAddress"], 1_000)
    watch()
    chain.pay(created["bitcoinAddress"], sats(created) - 1_000)
    watch()
    chain.mine()
    watch()
    chain.mine(5)
    watch()
    drain(notifications_queue, clock, {created["id"]})

    bodies = ipn_receiver.accepted("/woo")
    assert [form(body) for body in bodies] == [
        (1001, "new"),
        (1002, "new"),
        (1002, "paid"),
        ("plain", "paid"),
        (1003, "paid"),
        ("plain", "confirmed"),
        (1005, "confirmed"),
        ("plain", "complete"),
        (1006, "complete"),
    ]
    assert {body["event"]["name"] for body in bodies if "event" in body} == {
        "invoice_created",
        "invoice_receivedPayment",
        "invoice_paidInFull",
        "invoice_confirmed",
        "invoice_completed",
    }
    first_payment = bodies[1]["data"]
    assert (first_payment["btcPaid"], first_payment["btcDue"]) == (btc(1_000), btc(sats(created) - 1_000))
    plain_paid = bodies[3]
    assert (plain_paid["id"], plain_paid["btcDue"], plain_paid["btcPaid"]) == (
        created["id"],
        btc(0),
        btc(sats(created)),
    )


@root_only
def test_a_payment_after_expiry_is_paid_after_expiration(shop, chain, watch, ipn_receiver, notifications_queue, clock):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/late", extendedNotifications=True)
    clock.now = created["expirationTime"] + 1
    watch()
    # An expired invoice is looked at every few minutes, not every run.
    clock.advance(10 * MINUTE)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    drain(notifications_queue, clock, {created["id"]})

    bodies = ipn_receiver.accepted("/late")
    assert [form(body) for body in bodies] == [
        (1001, "new"),
        ("plain", "expired"),
        (1004, "expired"),
        (1002, "expired"),
        (1009, "expired"),
    ]
    assert bodies[-1]["event"]["name"] == "invoice_paidAfterExpiration"
    assert bodies[-1]["data"]["exceptionStatus"] == "paidLate"


@root_only
def test_only_confirmed_goes_out_without_full_notifications_and_nothing_extended(
    shop, chain, watch, ipn_receiver, notifications_queue, clock
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/plain")
    chain.pay(created["bitcoinAddress"], 1_000)
    watch()
    chain.pay(created["bitcoinAddress"], sats(created) - 1_000)
    watch()
    chain.mine(6)
    watch()
    drain(notifications_queue, clock, {created["id"]})
    assert [form(body) for body in ipn_receiver.accepted("/plain")] == [("plain", "confirmed")]


def _secret(page) -> str:
    return re.search(r'<code class="secret">([^<]+)</code>', page.text).group(1)


def _signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@root_only
def test_every_post_is_signed_with_the_store_secret_its_settings_page_shows_and_rotates(
    api_url, shop, store, owner, chain, watch, ipn_receiver, notifications_queue, clock
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/signed", fullNotifications=True)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    drain(notifications_queue, clock, {created["id"]})

    settings_url = f"{api_url}/stores/{store.store_id}"
    secret = _secret(owner.get(settings_url))
    [(body, signature)] = ipn_receiver.signed
    assert signature == _signature(secret, body)
    assert _secret(owner.get(settings_url)) == secret

    rotated = post_form(owner, settings_url, f"{settings_url}/notification-secret")
    assert rotated.status_code == 303
    new_secret = _secret(owner.get(settings_url))
    assert new_secret != secret
    chain.mine()
    watch()
    drain(notifications_queue, clock, {created["id"]})
    [_, (body, signature)] = ipn_receiver.signed
    assert signature == _signature(new_secret, body) != _signature(secret, body)

    refused = owner.post(f"{settings_url}/notification-secret", data={}, allow_redirects=False)
    assert refused.status_code == 403
    assert _secret(owner.get(settings_url)) == new_secret


@root_only
def test_the_merchant_marks_an_invoice_invalid_then_complete_from_its_page(
    api_url, shop, store, owner, ipn_receiver, notifications_queue, clock
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/marks", extendedNotifications=True)
    page_url = f"{api_url}/stores/{store.store_id}/invoices/{created['id']}"
    mark_url = f"{page_url}/mark"
    assert f'action="{mark_url}"' in owner.get(page_url).text

    forged = owner.post(mark_url, data={"status": "complete"}, allow_redirects=False)
    assert forged.status_code == 403
    unexplained = post_form(owner, page_url, mark_url, status="invalid", reason=" ")
    assert unexplained.status_code == 400 and "Say why the invoice is invalid" in text_of(unexplained)
    assert shop.get_invoice(created["id"])["status"] == "new"

    invalid = post_form(owner, page_url, mark_url, status="invalid", reason="Order cancelled by phone")
    assert invalid.status_code == 303 and invalid.headers["Location"] == f"{page_url}?marked=invalid"
    after = shop.get_invoice(created["id"])
    assert (after["status"], after["exceptionStatus"]) == ("invalid", "marked")
    assert "Order cancelled by phone" in text_of(owner.get(page_url))
    checkout = requests.get(created["url"], timeout=10)
    assert checkout.status_code == 200 and "invalid" in text_of(checkout).lower()

    complete = post_form(owner, page_url, mark_url, status="complete")
    assert complete.status_code == 303
    assert shop.get_invoice(created["id"])["status"] == "complete"
    again = post_form(owner, page_url, mark_url, status="complete")
    assert again.status_code == 400 and "cannot be marked complete" in text_of(again)
    # As BTCPay: a marked invoice can still be marked the other way, not the same way again.
    page = owner.get(page_url).text
    assert 'value="invalid"' in page and 'value="complete"' not in page

    drain(notifications_queue, clock, {created["id"]})
    bodies = ipn_receiver.accepted("/marks")
    assert [form(body) for body in bodies] == [
        (1001, "new"),
        ("plain", "invalid"),
        (1008, "invalid"),
        ("plain", "complete"),
        (2008, "complete"),
    ]
    assert [bodies[2]["event"]["name"], bodies[4]["event"]["name"]] == [
        "invoice_markedInvalid",
        "invoice_markedComplete",
    ]
    assert bodies[4]["data"]["exceptionStatus"] == "marked"


@root_only
def test_a_mark_that_loses_the_race_to_the_watcher_decides_on_the_invoice_it_reads_again(
    shop, chain, watch, ipn_receiver, notifications_queue, clock
):
    created = shop.create_invoice(
        notificationURL=f"{ipn_receiver.url}/race", fullNotifications=True, transactionSpeed="high"
    )
    seen_by_merchant = InvoiceModel.get(created["id"])  # "new" when the page was drawn
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()  # confirmed meanwhile

    with pytest.raises(BadRequest, match="An invoice that is confirmed cannot be marked complete"):
        marking.mark(seen_by_merchant, "complete")
    assert shop.get_invoice(created["id"])["status"] == "confirmed"

    drain(notifications_queue, clock, {created["id"]})
    assert [form(body) for body in ipn_receiver.accepted("/race")] == [("plain", "paid"), ("plain", "confirmed")]

    paid = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/race2", fullNotifications=True)
    chain.pay(paid["bitcoinAddress"], sats(paid))
    watch()
    seen_paid = InvoiceModel.get(paid["id"])  # "paid", which may be marked invalid
    chain.mine(6)
    watch()  # complete meanwhile
    with pytest.raises(BadRequest, match="An invoice that is complete cannot be marked invalid"):
        marking.mark(seen_paid, "invalid", "too late")
    assert shop.get_invoice(paid["id"])["status"] == "complete"


@root_only
def _set_contact_email(owner, api_url, store, email: str):
    page = f"{api_url}/stores/{store.store_id}"
    settings = {
        "name": store.name,
        "default_currency": "USD",
        "invoice_expiration_minutes": "15",
        "transaction_speed": "medium",
        # Its own wallet: a wallet belongs to one store, so a shared one would fail on test order.
        "wallet": store.wallet,
        "contact_email": email,
    }
    return post_form(owner, page, page, action="save", **settings)


@root_only
def test_paid_confirmed_and_complete_are_emailed_through_smtp_and_listed_on_the_invoice_page(
    api_url, shop, store, owner, chain, watch, smtp_sink, notifications_queue, clock
):
    assert _set_contact_email(owner, api_url, store, "owner@shop.example").status_code == 303
    created = shop.create_invoice(notificationEmail="orders@shop.example", orderId="order-42")
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    chain.mine()
    watch()
    chain.mine(5)
    watch()
    drain(notifications_queue, clock, {created["id"]})

    assert [recipients for recipients, _ in smtp_sink.messages] == [["orders@shop.example", "owner@shop.example"]] * 3
    assert [message["Subject"] for _, message in smtp_sink.messages] == [
        f"Invoice {created['id']} is paid (not confirmed yet)",
        f"Invoice {created['id']} is confirmed",
        f"Invoice {created['id']} is complete",
    ]
    first = smtp_sink.messages[0][1]
    assert first["From"] == SENDER
    text = first.get_content()
    assert "Price: 10.00 USD" in text and "Order: order-42" in text and f"Paid: {btc(sats(created))} BTC" in text
    assert f"/invoice?id={created['id']}" in text

    page = text_of(owner.get(f"{api_url}/stores/{store.store_id}/invoices/{created['id']}"))
    assert f"Email to orders@shop.example, owner@shop.example: Invoice {created['id']} is confirmed" in page
    assert "This invoice has no notification URL" in page


@root_only
def test_partial_expiry_and_late_payment_are_emailed_through_ses(
    shop, chain, watch, ses_outbox, notifications_queue, clock
):
    partial = shop.create_invoice(notificationEmail="orders@shop.example")
    late = shop.create_invoice(notificationEmail="orders@shop.example")
    chain.pay(partial["bitcoinAddress"], 1_000)
    watch()
    clock.now = max(partial["expirationTime"], late["expirationTime"]) + 1
    watch()
    clock.advance(10 * MINUTE)
    chain.pay(late["bitcoinAddress"], sats(late))
    watch()
    drain(notifications_queue, clock, {partial["id"], late["id"]})

    sent = ses_outbox.sent()
    assert sorted(message["subject"] for message in sent) == sorted(
        [f"Invoice {partial['id']} expired, partly paid", f"Invoice {late['id']} was paid after it expired"]
    )
    assert all(m["source"] == SENDER and m["destinations"] == {"ToAddresses": ["orders@shop.example"]} for m in sent)


@root_only
def test_an_email_ses_refuses_is_retried_like_any_notification(
    dynamodb, shop, chain, watch, email_settings, notifications_queue, clock
):
    import boto3

    # A sender SES has not verified: it refuses the mail until it is.
    unverified = "unverified@shop.example"
    email_settings(EMAIL_SENDER=unverified, AWS_ENDPOINT_URL_SESV2=dynamodb)
    created = shop.create_invoice(notificationEmail="orders@shop.example")
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    drain(notifications_queue, clock, {created["id"]}, until=clock.now)
    [email] = notifications.history(created["id"])
    assert email["state"] == "pending" and email["email"]["to"] == ["orders@shop.example"]
    [attempt] = email["attempts"]
    assert attempt["status"] is None and attempt["error"].startswith("SES:") and "not verified" in attempt["error"]

    boto3.client("ses", endpoint_url=dynamodb, region_name="us-east-1").verify_email_identity(EmailAddress=unverified)
    drain(notifications_queue, clock, {created["id"]})
    [email] = notifications.history(created["id"])
    assert email["state"] == "delivered" and [a["error"] for a in email["attempts"]][-1] is None


@root_only
def test_no_email_without_a_sender(shop, chain, watch, notifications_queue, clock):
    created = shop.create_invoice(notificationEmail="orders@shop.example", transactionSpeed="high")
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    assert notifications.history(created["id"]) == []


def test_the_queue_delay_is_in_seconds_and_never_over_sqs_longest(email_settings, notifications_queue, clock):
    email_settings(NOTIFICATION_MAX_DELAY_SECONDS="900")
    delays = []
    sqs = notifications.sqs()

    def record(params, **_):
        delays.append(params["DelaySeconds"])

    sqs.meta.events.register("provide-client-params.sqs.SendMessage", record)
    try:
        now = clock.now
        for due in (now + 1_000, now + 899_001, now + 900_000, now + 900_001, now + 5 * HOUR):
            notifications.enqueue("delay-test", due=due, now=now)
        # A message due after the longest delay is sent on for the rest, not delivered early.
        message = json.dumps({"invoiceId": "delay-test", "due": now + 900_001})
        notifications.handle_message(message, now=now + 900_000)
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", record)
    assert delays == [1, 900, 900, 900, 900, 1]
    assert not any("delay-test" in message["Body"] for message in notifications_queue.receive_all())
