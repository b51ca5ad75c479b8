"""Every money rule on both sides of its edge: amounts that round, the expiration, the tolerance, the
confirmation target, SQS's longest delay.

Each test here was written to fail on a change that the rest of the suite let through (`make mutate`
found them, see scripts/mutate.py); the comment on each names the change it catches.
"""

import json
import os
import uuid
from decimal import Decimal

import pytest

from chalicelib.billing import stores
from chalicelib.errors import BadRequest
from chalicelib.messaging import notifications
from chalicelib.models import StoreModel
from chalicelib.payments.rules import BLOCK_TIME_SLACK_MS, Payment, Terms, evaluate, merge
from chalicelib.payments.wallet import Wallet
from chalicelib.settings import get_settings
from tests.api_fixtures import root_only
from tests.conftest import BIP84_ZPUB, new_wallet
from tests.payments_support import MINUTE, QUEUE_NAME, sats

CREATED = 1_700_000_000_000
EXPIRATION = CREATED + 15 * MINUTE
WINDOW = 24 * 60 * MINUTE
DUE = 100_000


def terms(target: int = 1, tolerance: str = "0", due: int = DUE) -> Terms:
    return Terms(due, CREATED, EXPIRATION, target, WINDOW, Decimal(tolerance))


def look(terms: Terms, seen: list[Payment], now: int, previous: str = "new", stored=()):
    """What the watcher concludes from one look at the chain at `now`."""
    return evaluate(terms, previous, merge(terms, list(stored), seen, now), now)


def unconfirmed(amount: int, txid: str = "a") -> Payment:
    return Payment(txid, 0, amount, 0, 0)


def in_block(amount: int, block_time: int, confirmations: int = 1, txid: str = "a") -> Payment:
    return Payment(txid, 0, amount, confirmations, 0, 800_000, block_time)


# The amount due


@root_only
@pytest.mark.parametrize(
    ("price", "currency", "due"),
    [
        ("1", "USD", 1_539),  # 1538.46 sats: rounded to nearest it would be one short
        ("0.65", "USD", 1_000),  # exactly 1000 sats: no satoshi added
        ("100", "JPY", 1_026),  # a currency without decimals: 1025.64 sats
        ("10", "USD", 15_385),
        ("650000", "USD", 1_000_000_000),  # exactly 10 BTC: the BIP21 amount is 10, not 1E+1
    ],
)
def test_the_amount_due_is_rounded_up_to_a_whole_satoshi(merchant, price, currency, due):
    response = merchant.post("/invoices", {"price": price, "currency": currency})
    assert response.status_code == 200, response.text
    invoice = response.json()["data"]
    assert sats(invoice) == invoice["paymentSubtotals"]["BTC"] == due
    assert invoice["btcPrice"] == invoice["btcDue"] == f"{Decimal(due) / 10**8:.8f}"
    assert invoice["paymentCodes"]["BTC"]["BIP21"].endswith(f"?amount={(Decimal(due) / 10**8).normalize():f}")


@root_only
def test_an_amount_due_of_exactly_the_dust_limit_is_accepted_and_one_satoshi_less_refused(merchant):
    # The test wallet's addresses are native segwit: 294 sats. $0.1911 is exactly 294 sats at $65,000.
    at_the_limit = merchant.post("/invoices", {"price": "0.1911", "currency": "USD"})
    assert at_the_limit.status_code == 200, at_the_limit.text
    assert sats(at_the_limit.json()["data"]) == 294
    below = merchant.post("/invoices", {"price": "0.19", "currency": "USD"})  # 292.3 sats, due 293
    assert below.status_code == 400
    # The least price is rounded up too: $0.1911 is asked for as $0.20, never as a price that is refused.
    assert below.json() == {
        "error": "price is too small: the amount due must be at least 294 sats (0.00000294 BTC), the smallest "
        "payment Bitcoin relays to this store's addresses; at the current rate that is 0.20 USD"
    }


# The expiration: a payment that arrives exactly at it is on time.


def test_a_payment_seen_exactly_at_the_expiration_is_on_time():
    state = look(terms(), [unconfirmed(DUE)], EXPIRATION)
    assert (state.status, state.exception_status, state.transitions) == ("paid", None, ("paid",))


def test_a_payment_in_a_block_exactly_at_the_expiration_is_on_time_even_if_seen_later():
    state = look(terms(), [in_block(DUE, EXPIRATION)], EXPIRATION + 10 * MINUTE)
    assert (state.status, state.exception_status) == ("confirmed", None)


def test_a_payment_in_a_block_a_millisecond_after_the_expiration_is_late():
    state = look(terms(), [in_block(DUE, EXPIRATION + 1)], EXPIRATION + 1)
    assert (state.status, state.exception_status, state.paid) == ("expired", "paidLate", DUE)


def test_a_late_partial_payment_is_paid_late_not_partial():
    state = look(terms(), [in_block(DUE // 2, EXPIRATION + 1)], EXPIRATION + 1)
    assert (state.status, state.exception_status) == ("expired", "paidLate")


def test_an_on_time_partial_payment_stays_partial_once_expired():
    state = look(terms(), [unconfirmed(DUE // 2)], EXPIRATION + 1, stored=[Payment("a", 0, DUE // 2, 0, CREATED)])
    assert (state.status, state.exception_status) == ("expired", "paidPartial")


def test_a_partial_payment_seen_exactly_at_the_expiration_is_partial_not_late():
    first = look(terms(), [unconfirmed(DUE // 2)], EXPIRATION)
    state = look(
        terms(), [unconfirmed(DUE // 2)], EXPIRATION + 1, stored=merge(terms(), [], [unconfirmed(DUE // 2)], EXPIRATION)
    )
    assert (first.status, first.exception_status) == ("new", "paidPartial")
    assert (state.status, state.exception_status) == ("expired", "paidPartial")


def test_unpaid_expires_one_millisecond_after_the_expiration(shop, chain, watch, clock):
    created = shop.create_invoice()
    clock.now = created["expirationTime"]
    watch()
    assert shop.get_invoice(created["id"])["status"] == "new"
    clock.now += 1
    watch()
    assert shop.get_invoice(created["id"])["status"] == "expired"


def test_the_watcher_counts_a_payment_first_seen_exactly_at_the_expiration_as_on_time(shop, chain, watch, clock):
    created = shop.create_invoice()
    chain.pay(created["bitcoinAddress"], sats(created))
    clock.now = created["expirationTime"]
    watch()
    invoice = shop.get_invoice(created["id"])
    assert (invoice["status"], invoice["exceptionStatus"], invoice["amountPaid"]) == ("paid", False, sats(created))
    assert invoice["transactions"][0]["receivedTime"] == created["expirationTime"]


def test_the_watcher_counts_a_payment_mined_after_the_expiration_as_late(shop, chain, watch, clock):
    created = shop.create_invoice()
    # Blocks carry whole seconds: one second on, the block is surely after the expiration.
    clock.now = created["expirationTime"] + 1000
    chain.pay(created["bitcoinAddress"], sats(created))
    chain.mine()
    watch()
    invoice = shop.get_invoice(created["id"])
    assert (invoice["status"], invoice["exceptionStatus"], invoice["amountPaid"]) == (
        "expired",
        "paidLate",
        sats(created),
    )


def test_an_invoice_with_nothing_due_is_never_paid():
    assert look(terms(due=0), [], CREATED + MINUTE).status == "new"
    assert look(terms(due=1), [unconfirmed(1)], CREATED + MINUTE).status == "paid"


# The tolerance: short by exactly the tolerance is paid; an overpayment is judged against the full amount.


def test_short_by_exactly_the_tolerance_is_paid_in_full():
    state = look(terms(tolerance="1"), [unconfirmed(99_000)], CREATED + MINUTE)
    assert (state.status, state.exception_status, state.paid) == ("paid", None, 99_000)


def test_short_by_one_satoshi_more_than_the_tolerance_is_partial():
    state = look(terms(tolerance="1"), [unconfirmed(98_999)], CREATED + MINUTE)
    assert (state.status, state.exception_status) == ("new", "paidPartial")


def test_the_exact_amount_under_a_tolerance_is_not_an_overpayment():
    state = look(terms(tolerance="1"), [unconfirmed(DUE)], CREATED + MINUTE)
    assert (state.status, state.exception_status) == ("paid", None)


def test_one_satoshi_over_is_an_overpayment_and_one_satoshi_is_a_partial_payment():
    assert look(terms(tolerance="1"), [unconfirmed(DUE + 1)], CREATED + MINUTE).exception_status == "paidOver"
    assert look(terms(), [unconfirmed(1)], CREATED + MINUTE).exception_status == "paidPartial"


@pytest.fixture
def one_percent_tolerance():
    before = os.environ.get("PAYMENT_TOLERANCE_PERCENT")
    os.environ["PAYMENT_TOLERANCE_PERCENT"] = "1"
    get_settings.cache_clear()
    yield
    if before is None:
        del os.environ["PAYMENT_TOLERANCE_PERCENT"]
    else:
        os.environ["PAYMENT_TOLERANCE_PERCENT"] = before
    get_settings.cache_clear()


@root_only
def test_the_watcher_applies_the_configured_tolerance(one_percent_tolerance, shop, chain, watch):
    created = shop.create_invoice()
    short = sats(created) - sats(created) // 100
    chain.pay(created["bitcoinAddress"], short)
    watch()
    invoice = shop.get_invoice(created["id"])
    assert (invoice["status"], invoice["exceptionStatus"], invoice["amountPaid"]) == ("paid", False, short)


# The confirmation target and the six confirmations of `complete`


@pytest.mark.parametrize(
    ("target", "confirmations", "status"),
    [
        (0, 0, "confirmed"),
        (1, 0, "paid"),
        (1, 1, "confirmed"),
        (6, 5, "paid"),
        (6, 6, "complete"),
        (0, 5, "confirmed"),
        (1, 6, "complete"),
    ],
)
def test_the_confirmation_target_exactly(target, confirmations, status):
    payment = in_block(DUE, CREATED + MINUTE, confirmations) if confirmations else unconfirmed(DUE)
    assert look(terms(target=target), [payment], CREATED + 2 * MINUTE).status == status


def test_an_unconfirmed_top_up_does_not_hold_back_a_confirmed_full_payment():
    seen = [in_block(DUE, CREATED + MINUTE, 6, txid="a"), unconfirmed(500, txid="b")]
    state = look(terms(), seen, CREATED + 2 * MINUTE)
    assert (state.status, state.exception_status, state.paid) == ("complete", "paidOver", DUE + 500)


# Funds already at a reused address


def test_a_block_exactly_at_the_slack_before_creation_counts_and_one_earlier_does_not():
    edge = CREATED - BLOCK_TIME_SLACK_MS
    assert look(terms(), [in_block(DUE, edge)], CREATED + MINUTE).paid == DUE
    assert look(terms(), [in_block(DUE, edge - 1)], CREATED + MINUTE).paid == 0


# Addresses: the last index there is, and a store that has none to give


LAST_INDEX = 2**31 - 1


def test_the_last_address_index_is_given_and_the_next_is_refused_by_name():
    wallet = Wallet.parse(BIP84_ZPUB)
    assert wallet.addresses(LAST_INDEX, 1) == [wallet.address(LAST_INDEX)]
    with pytest.raises(BadRequest) as past_the_end:
        wallet.address(LAST_INDEX + 1)
    assert past_the_end.value.message == f"Address index must be a whole number from 0 to {LAST_INDEX}."
    with pytest.raises(BadRequest) as too_many:
        wallet.addresses(LAST_INDEX - 1, 3)
    assert too_many.value.message == "count must be a whole number from 0 to 2."


@root_only
def test_a_store_without_a_wallet_reserves_no_address(user, pair):
    bare = stores.create_store(user.login, "No wallet yet")
    response = pair("merchant", store_id=bare.store_id).post("/invoices", {"price": 1, "currency": "USD"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("This store has no wallet: set its extended public key")
    assert StoreModel.get(bare.store_id).next_address_index in (None, 0)


def test_an_index_is_not_reserved_for_a_wallet_changed_since_the_store_was_read(store):
    # What an invoice being created sees when the merchant saves a new wallet meanwhile: the store
    # it read still has the old wallet, the table the new one.
    as_read = stores.invoicing_store(store.store_id)
    settings = {"name": store.name, "default_currency": "USD", "invoice_expiration_minutes": "15"}
    stores.update_settings(
        stores.get_store(store.store_id, consistent=True),
        {**settings, "transaction_speed": "medium", "wallet": new_wallet()},
    )
    with pytest.raises(BadRequest) as changed:
        stores.reserve_address_index(as_read)
    assert changed.value.message == "This store's wallet was changed meanwhile: create the invoice again"
    assert StoreModel.get(store.store_id, consistent_read=True).next_address_index in (None, 0)


# SQS delays, in seconds, at most 900


@pytest.fixture
def longest_sqs_delay(notifications_queue):
    """The deployed setting (SQS's longest delay) instead of the suite's 0, and the delays the queue received.

    The delay is read back from moto's SQS server, which runs in this process: SQS gives a
    receiver no DelaySeconds, and waiting the delay out would make the test slow.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]].queues[QUEUE_NAME]
    before = os.environ["NOTIFICATION_MAX_DELAY_SECONDS"]
    os.environ["NOTIFICATION_MAX_DELAY_SECONDS"] = "900"
    get_settings.cache_clear()
    invoice_id = f"delay-{uuid.uuid4().hex}"

    def delays() -> list[tuple[int, int]]:
        """(due, delay in seconds) of each message sent for this test's invoice."""
        return [
            # moto leaves delayed_until at 0 for an undelayed message.
            (json.loads(message.body)["due"], round(max(message.delayed_until - message.sent_timestamp, 0) / 1000))
            for message in list(queue._messages)
            if json.loads(message.body)["invoiceId"] == invoice_id
        ]

    yield invoice_id, delays
    os.environ["NOTIFICATION_MAX_DELAY_SECONDS"] = before
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("wait_ms", "delay"),
    [
        (5_000, 5),  # seconds, not milliseconds
        (4_001, 5),  # never before it is due
        (900_000, 900),
        (900_001, 900),  # SQS refuses more than 900 s
        (-3_000, 0),
    ],
)
def test_the_sqs_delay_is_in_seconds_up_to_900(longest_sqs_delay, wait_ms, delay):
    invoice_id, delays = longest_sqs_delay
    now = CREATED
    notifications.enqueue(invoice_id, due=now + wait_ms, now=now)
    assert delays() == [(now + wait_ms, delay)]


def test_a_back_off_longer_than_900_seconds_is_reached_in_hops(longest_sqs_delay):
    invoice_id, delays = longest_sqs_delay
    due = CREATED + 60 * MINUTE
    notifications.handle_message(json.dumps({"invoiceId": invoice_id, "due": due}), now=CREATED)
    notifications.handle_message(json.dumps({"invoiceId": invoice_id, "due": due}), now=due - 1_000)
    assert delays() == [(due, 900), (due, 1)]
