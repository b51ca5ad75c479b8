"""The pages once buyers pay: the checkout follows its invoice by polling; the invoice's page shows payments and IPNs.

Invoices are made by bitpay 2.6.1910's client, paid on the Esplora test chain and seen by
the watcher (tests/payments_support.py). The checkout is polled as its script polls it: at
the URL the page names, reading the status region the server renders. The merchant's pages
are read and submitted as a browser without JavaScript does.
"""

import html
import re
from decimal import Decimal

import pytest
import requests

from chalicelib.messaging import notifications
from chalicelib.models import now_ms
from chalicelib.pages.rendering import format_time
from tests.pages_support import csrf_token, post_form, signed_in, text_of, update_invoice, visible_text
from tests.payments_support import HOUR, MINUTE, btc, drain, pair_merchant, sats

root_only = pytest.mark.parametrize("api_url", [""], indirect=True)


class Checkout:
    """A buyer's open checkout page, and what its script reads each time it polls."""

    def __init__(self, url: str):
        self.page = requests.get(url, timeout=5)
        assert self.page.status_code == 200
        self.status_url = html.unescape(re.search(r'data-status-url="([^"]+)"', self.page.text).group(1))

    def poll(self) -> dict:
        answer = requests.get(self.status_url, timeout=5)
        assert answer.status_code == 200
        return answer.json()


def region_attribute(answer: dict, name: str) -> str | None:
    found = re.search(rf'<div class="status-region"[^>]* data-{name}="([^"]*)"', answer["statusRegion"])
    return found.group(1) if found else None


def shown(answer: dict) -> str:
    return visible_text(answer["statusRegion"])


@pytest.fixture
def owner(api_url, user):
    """The store owner's browser, signed in."""
    return signed_in(api_url, user.login)


# The buyer's checkout


def test_the_checkout_polls_the_status_url_it_names_under_any_base_path(api_url, shop):
    created = shop.create_invoice()
    checkout = Checkout(created["url"])
    assert checkout.status_url == f"{api_url}/invoice/status?id={created['id']}"

    answer = checkout.poll()
    assert {key: answer[key] for key in ("status", "exceptionStatus", "btcDue", "btcPaid")} == {
        "status": "new",
        "exceptionStatus": False,
        "btcDue": created["btcDue"],
        "btcPaid": btc(0),
    }
    page_key = re.search(r'<div class="status-region"[^>]* data-key="([^"]*)"', checkout.page.text).group(1)
    assert region_attribute(answer, "key") == page_key
    # The watcher looks once a minute while the invoice is open: the page asks as often.
    assert region_attribute(answer, "poll-seconds") == "60"
    assert "Awaiting payment." in shown(answer) and created["bitcoinAddress"] in shown(answer)
    assert 'class="qr"' in answer["statusRegion"]


@root_only
def test_the_polled_checkout_follows_a_partial_payment_to_complete(shop, chain, watch, clock):
    created = shop.create_invoice(transactionSpeed="medium")
    address, due = created["bitcoinAddress"], sats(created)
    checkout = Checkout(created["url"])

    chain.pay(address, 6_000)
    watch()
    partial = checkout.poll()
    assert (partial["status"], partial["exceptionStatus"]) == ("new", "paidPartial")
    assert f"Partly paid: {btc(6_000)} BTC received, send the rest." in shown(partial)
    assert f"{btc(due - 6_000)} BTC still due" in shown(partial)
    remaining_uri = f"bitcoin:{address}?amount={Decimal(due - 6_000) / 10**8}"
    assert f'href="{html.escape(remaining_uri)}"' in partial["statusRegion"]
    assert 'class="qr"' in partial["statusRegion"]
    assert region_attribute(partial, "poll-seconds") == "20"
    # The page as first served (no script) says the same.
    assert f"{btc(due - 6_000)} BTC still due" in text_of(requests.get(created["url"], timeout=5))

    clock.advance(3 * MINUTE)
    chain.pay(address, due - 6_000)
    watch()
    paid = checkout.poll()
    assert "Payment received, waiting for confirmation." in shown(paid)
    assert 'class="qr"' not in paid["statusRegion"] and address not in paid["statusRegion"]
    assert region_attribute(paid, "poll-seconds") == "60"

    chain.mine()
    watch()
    confirmed = checkout.poll()
    assert confirmed["status"] == "confirmed" and "Payment confirmed. Thank you." in shown(confirmed)
    assert region_attribute(confirmed, "poll-seconds") is None

    chain.mine(5)
    watch()
    complete = checkout.poll()
    assert complete["status"] == "complete" and "Paid. Thank you." in shown(complete)
    assert region_attribute(complete, "poll-seconds") is None
    assert len({region_attribute(answer, "key") for answer in (partial, paid, confirmed, complete)}) == 4


@root_only
def test_an_overpaid_checkout_says_so(shop, chain, watch):
    created = shop.create_invoice(redirectURL="https://shop.example.com/thanks")
    chain.pay(created["bitcoinAddress"], sats(created) + 5_000)
    watch()
    answer = Checkout(created["url"]).poll()
    assert answer["exceptionStatus"] == "paidOver"
    assert (
        f"Overpaid: {btc(sats(created) + 5_000)} BTC received, {created['btcPrice']} BTC was due. "
        "Contact the merchant about the difference." in shown(answer)
    )
    assert 'href="https://shop.example.com/thanks"' in answer["statusRegion"]


@root_only
@pytest.mark.parametrize(
    "redirect, website, expected",
    [
        ("https://shop.example.com/order/1", "https://shop.example.com", "https://shop.example.com/order/1"),
        (None, "https://shop.example.com", "https://shop.example.com"),
        (None, None, None),
    ],
    ids=["redirect-url", "store-website", "neither"],
)
def test_a_finished_checkout_leads_back_to_the_shop(shop, store, redirect, website, expected):
    from chalicelib.models import StoreModel

    if website:
        StoreModel.get(store.store_id).update(actions=[StoreModel.website.set(website)])
    created = shop.create_invoice(**({"redirectURL": redirect} if redirect else {}))
    # Still open: the buyer has paying to do, not a shop to go back to.
    assert "Return to" not in Checkout(created["url"]).poll()["statusRegion"]

    for status in ("expired", "paid"):
        update_invoice(created["id"], status=status, store_status=f"{store.store_id}#{status}")
        page, answer = requests.get(created["url"], timeout=5), Checkout(created["url"]).poll()
        for region in (page.text, answer["statusRegion"]):
            if expected is None:
                assert "Return to" not in region
            else:
                assert f'<a class="button" href="{expected}">Return to Test shop</a>' in region


@root_only
def test_an_expired_checkout_keeps_polling_for_a_late_payment_and_shows_it(shop, chain, watch, clock):
    created = shop.create_invoice()
    checkout = Checkout(created["url"])
    clock.now = created["expirationTime"] + 1
    watch()
    expired = checkout.poll()
    assert expired["status"] == "expired" and "This invoice has expired." in shown(expired)
    assert 'class="qr"' not in expired["statusRegion"]
    # A payment sent in the last moments is seen after the expiry: the page keeps asking a while.
    assert region_attribute(expired, "poll-seconds") == "60"

    clock.advance(10 * MINUTE)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    late = checkout.poll()
    assert (late["status"], late["exceptionStatus"]) == ("expired", "paidLate")
    assert "Paid after this invoice expired." in shown(late)
    assert f"{btc(sats(created))} BTC reached this invoice after it expired." in shown(late)
    assert region_attribute(late, "poll-seconds") is None


@root_only
def test_a_paid_checkout_past_its_expiry_asks_as_often_as_the_watcher_looks(shop, chain, watch):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    # Ten minutes past the expiry, the watcher checks a paid invoice every 2 minutes (watcher.late_interval).
    update_invoice(created["id"], expiration=now_ms() - 10 * MINUTE)
    answer = Checkout(created["url"]).poll()
    assert answer["status"] == "paid"
    assert region_attribute(answer, "poll-seconds") == "120"


@root_only
def test_an_expired_checkout_stops_polling_a_while_after_expiry(shop):
    created = shop.create_invoice()
    update_invoice(created["id"], expiration=created["invoiceTime"] - HOUR)
    answer = Checkout(created["url"]).poll()
    assert answer["status"] == "expired" and "This invoice has expired." in shown(answer)
    assert region_attribute(answer, "poll-seconds") is None


def test_without_a_script_the_checkout_reloads_itself_as_often_as_the_script_would_ask(api_url, shop):
    created = shop.create_invoice()
    page = Checkout(created["url"]).page.text
    assert '<noscript><meta http-equiv="refresh" content="60"></noscript>' in page
    assert f'<noscript><p class="refresh"><a href="{api_url}/invoice?id={created["id"]}">Refresh the status</a>' in page
    update_invoice(created["id"], expiration=created["invoiceTime"] - HOUR)
    finished = Checkout(created["url"]).page.text
    assert "This invoice has expired." in visible_text(finished)
    assert 'http-equiv="refresh"' not in finished and "Refresh the status" not in finished


@root_only
def test_an_invoice_that_expired_partly_paid_says_what_was_received(shop, chain, watch, clock):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], 1_000)
    watch()
    clock.now = created["expirationTime"] + 1
    watch()
    answer = Checkout(created["url"]).poll()
    assert (answer["status"], answer["exceptionStatus"]) == ("expired", "paidPartial")
    assert "This invoice expired before it was paid in full." in shown(answer)
    assert f"{btc(1_000)} BTC of {created['btcPrice']} BTC was received." in shown(answer)


@root_only
def test_a_payment_that_never_confirms_makes_the_checkout_invalid(shop, chain, watch, clock):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    clock.now = created["expirationTime"] + 24 * HOUR + 1
    watch()
    answer = Checkout(created["url"]).poll()
    assert answer["status"] == "invalid"
    assert "This invoice is invalid: its payment was not confirmed in time." in shown(answer)
    assert region_attribute(answer, "poll-seconds") is None


# The merchant's invoice page


def notification_sections(page: requests.Response) -> list[str]:
    return [
        visible_text(section)
        for section in re.findall(r"<section class=\"card notification\".*?</section>", page.text, re.S)
    ]


@root_only
def test_the_invoice_page_shows_payments_and_every_notification_attempt(
    api_url, shop, owner, store, chain, watch, clock, ipn_receiver, notifications_queue
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", fullNotifications=True)
    page_url = f"{api_url}/stores/{store.store_id}/invoices/{created['id']}"
    before = text_of(owner.get(page_url))
    assert "No payment seen yet." in before and "No notification yet." in before

    ipn_receiver.fail("/ipn", 1)
    paid_at = clock.now
    txid = chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    drain(notifications_queue, clock, {created["id"]}, until=clock.now)
    page = owner.get(page_url)
    assert page.status_code == 200
    assert f"{format_time(paid_at)} {txid} {btc(sats(created))} BTC 0" in text_of(page)
    [paid] = notification_sections(page)
    assert paid.startswith("invoice_paidInFull (event 1003) pending")
    assert f"next attempt {format_time(paid_at + MINUTE)}" in paid
    assert f"{format_time(paid_at)} 500 HTTP 500" in paid

    chain.mine()
    watch()
    drain(notifications_queue, clock, {created["id"]})
    page = owner.get(page_url)
    assert f"{txid} {btc(sats(created))} BTC 1" in text_of(page)
    paid, confirmed = notification_sections(page)
    assert paid.startswith("invoice_paidInFull (event 1003) delivered")
    assert f"{format_time(paid_at)} 500 HTTP 500 {format_time(paid_at + MINUTE)} 200 —" in paid
    assert confirmed.startswith(f"invoice_confirmed (event 1005) delivered To {ipn_receiver.url}/ipn")
    # Not held back by the paid one's retry: it went out when it happened.
    assert confirmed.endswith("Error " + f"{format_time(paid_at)} 200 —")


def test_resending_a_notification_from_the_invoice_page(
    api_url, shop, owner, store, clock, ipn_receiver, notifications_queue
):
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}/ipn", extendedNotifications=True)
    page_url = f"{api_url}/stores/{store.store_id}/invoices/{created['id']}"
    resend_url = f"{page_url}/notifications"
    token = csrf_token(owner.get(page_url))
    first_look = owner.get(page_url).text
    assert f'action="{resend_url}"' in first_look
    # Nothing has gone out yet (invoice_created waits in the queue): the button sends, it does not resend.
    assert ">Send notification</button>" in first_look and "Resend" not in first_look

    for refused in (
        owner.post(resend_url, data={}, allow_redirects=False),
        owner.post(resend_url, data={"csrf_token": token[::-1]}, allow_redirects=False),
    ):
        assert refused.status_code == 403 and "did not come from this site" in refused.text
    assert [n["event"]["code"] for n in notifications.history(created["id"])] == [1001]  # invoice_created only

    resent = post_form(owner, page_url, resend_url)
    assert resent.status_code == 303 and resent.headers["Location"] == f"{page_url}?resent=1"
    drain(notifications_queue, clock, {created["id"]})
    [_, body] = ipn_receiver.accepted("/ipn")
    assert body["event"] == {"code": 1012, "name": "invoice_manuallyNotified"}
    assert body["data"]["id"] == created["id"] and body["data"]["status"] == "new"

    page = owner.get(resent.headers["Location"])
    assert "A notification of the invoice’s current status is queued." in text_of(page)
    [_, section] = notification_sections(page)
    assert section.startswith("invoice_manuallyNotified (event 1012) delivered")
    assert section.endswith(" 200 —")
    assert ">Resend notification</button>" in page.text


@root_only
def test_resend_is_refused_without_a_notification_url_and_for_another_stores_invoice(
    api_url, shop, owner, store, other_store, ipn_receiver
):
    plain = shop.create_invoice()
    page_url = f"{api_url}/stores/{store.store_id}/invoices/{plain['id']}"
    page = owner.get(page_url)
    assert "This invoice has no notification URL, so no notification is sent." in text_of(page)
    assert "Resend notification" not in page.text
    refused = post_form(owner, page_url, f"{page_url}/notifications")
    assert refused.status_code == 400 and refused.headers["Content-Type"].startswith("text/html")
    assert "This invoice has no notificationURL to notify" in text_of(refused)

    theirs = pair_merchant(api_url, other_store).create_invoice(notificationURL=f"{ipn_receiver.url}/theirs")
    through_mine = f"{api_url}/stores/{store.store_id}/invoices/{theirs['id']}"
    assert owner.get(through_mine).status_code == 404
    refused = owner.post(f"{through_mine}/notifications", data={"csrf_token": csrf_token(page)})
    assert refused.status_code == 404 and "Invoice not found" in refused.text
    assert notifications.history(theirs["id"]) == []
