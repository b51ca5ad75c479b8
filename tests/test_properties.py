"""Property-based tests of the payment rules: any payments, replacements and confirmations, watched over time.

A toy chain is driven by hypothesis; after every step the watcher's pure part (`payments.merge`
then `payments.evaluate`, as `watcher._record` calls them) looks at it, and the rules that must
hold whatever happened are checked. Bounded example counts keep the suite fast.

Payments that first appear after the expiration are always already in a block (one that is
later than the expiration): without a block, whether such a payment is late depends on what
the watcher saw before, which these tests do not model.
"""

import math
import uuid
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chalicelib.billing.invoices import MAX_PRICE, amount_due_sats
from chalicelib.messaging import notifications
from chalicelib.payments.rates import get_rates
from chalicelib.payments.rules import FINAL_STATUSES, Payment, Terms, evaluate, merge
from tests.api_fixtures import root_only
from tests.payments_support import FakeClock, drain, sats

PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MINUTE = 60_000
CREATED = 1_700_000_000_000
EXPIRATION = CREATED + 15 * MINUTE
WINDOW = 24 * 60 * MINUTE
ADDRESS_TXID = "tx{:04d}"

# Where each status may go next (BitPay's: new → paid → confirmed → complete, new → expired, paid → invalid).
NEXT = {
    "new": {"new", "paid", "confirmed", "complete", "expired", "invalid"},
    "paid": {"paid", "confirmed", "complete", "invalid"},
    "confirmed": {"confirmed", "complete", "invalid"},
    "complete": {"complete"},
    "expired": {"expired"},
    "invalid": {"invalid"},
}
ORDER = ("new", "paid", "confirmed", "complete")
PAID_STATUSES = ("paid", "confirmed", "complete")


class ToyChain:
    """Just what the watcher reads about one address: unconfirmed and confirmed outputs paying it."""

    def __init__(self):
        self.height = 800_000
        self.mempool: dict[str, int] = {}
        # txid -> (amount, height, block time in ms)
        self.blocks: dict[str, tuple[int, int, int]] = {}
        self.serial = 0

    def pay(self, amount: int) -> str:
        self.serial += 1
        txid = ADDRESS_TXID.format(self.serial)
        self.mempool[txid] = amount
        return txid

    def mine(self, blocks: int, now: int) -> None:
        for number in range(blocks):
            self.height += 1
            if number == 0:
                for txid, amount in self.mempool.items():
                    self.blocks[txid] = (amount, self.height, now)
                self.mempool.clear()

    def seen(self, now: int) -> list[Payment]:
        unconfirmed = [Payment(txid, 0, amount, 0, now) for txid, amount in self.mempool.items()]
        confirmed = [
            Payment(txid, 0, amount, self.height - height + 1, now, height, block_time)
            for txid, (amount, height, block_time) in self.blocks.items()
        ]
        return unconfirmed + confirmed

    def total(self) -> int:
        return sum(self.mempool.values()) + sum(amount for amount, _, _ in self.blocks.values())


terms_strategy = st.builds(
    Terms,
    # Round amounts too, where the tolerance cuts exactly.
    due=st.one_of(st.sampled_from((1, 1000, 100_000, 15_385_000)), st.integers(1, 10**9)),
    created=st.just(CREATED),
    expiration=st.just(EXPIRATION),
    target_confirmations=st.sampled_from((0, 1, 6)),
    monitoring_window_ms=st.just(WINDOW),
    tolerance_percent=st.sampled_from((Decimal(0), Decimal("0.5"), Decimal(1), Decimal(5))),
)
# (what, share of the amount due in per mille or blocks, minutes that pass before the watcher looks);
# the exact amount, the tolerance's edge and the expiration minute come up often.
step_strategy = st.tuples(
    st.sampled_from(("pay", "pay", "replace", "mine", "wait")),
    st.one_of(st.sampled_from((1000, 995, 990, 950, 1001)), st.integers(0, 1200)),
    st.one_of(st.sampled_from((0, 15)), st.integers(0, 40)),
)


def _arrived(payment: Payment) -> int:
    return payment.first_seen if payment.block_time is None else min(payment.first_seen, payment.block_time)


# exceptionStatus by (expired?, anything arrived after the expiration?, how much came in), written from
# BitPay's and BTCPay's rules rather than from the code: paidPartial for less than counts as paid in full,
# paidOver for more than the amount due, and, once expired, paidLate for money after the expiration or for
# a full amount (BTCPay's InvoiceWatcher: an expired invoice that is then paid in full is paidLate). Unlike
# BTCPay, a late payment short of the full amount is paidLate too (README: anything paid after expiry).
EXCEPTION_STATUS = {
    (False, False, "nothing"): None,
    (False, False, "short"): "paidPartial",
    (False, False, "in full"): None,
    (False, False, "over"): "paidOver",
    # A late top-up of an invoice paid in time changes only the amounts.
    (False, True, "short"): "paidPartial",
    (False, True, "in full"): None,
    (False, True, "over"): "paidOver",
    (True, False, "nothing"): None,
    (True, False, "short"): "paidPartial",
    (True, False, "in full"): "paidLate",
    (True, False, "over"): "paidLate",
    (True, True, "short"): "paidLate",
    (True, True, "in full"): "paidLate",
    (True, True, "over"): "paidLate",
}


def _amount_class(paid: int, terms: Terms) -> str:
    """Nothing, short, in full (short by at most the tolerance's percentage of the amount due) or over."""
    if paid == 0:
        return "nothing"
    if paid > terms.due:
        return "over"
    return "in full" if (terms.due - paid) * 100 <= terms.due * terms.tolerance_percent else "short"


def _expected_exception(status: str, paid: int, late: bool, terms: Terms) -> str | None:
    return EXCEPTION_STATUS[status == "expired", late, _amount_class(paid, terms)]


@PROPERTIES
@given(terms=terms_strategy, steps=st.lists(step_strategy, max_size=14), end=st.integers(0, 2 * WINDOW))
def test_any_history_of_payments_keeps_the_state_rules(terms, steps, end):
    chain = ToyChain()
    now, status, stored = CREATED, "new", []
    for what, size, minutes in [*steps, ("wait", 0, end // MINUTE)]:
        now += minutes * MINUTE
        amount = max(1, terms.due * size // 1000)
        if what == "pay":
            chain.pay(amount)
        elif what == "replace" and chain.mempool:
            # RBF: the first unconfirmed payment leaves; its replacement pays this address another amount.
            del chain.mempool[next(iter(chain.mempool))]
            if size % 3:
                chain.pay(amount)
        elif what == "mine":
            chain.mine(1 + size % 7, now)
        if now > EXPIRATION and chain.mempool:
            chain.mine(1, now)  # see the module docstring

        standing = merge(terms, stored, chain.seen(now), now)
        state = evaluate(terms, status, standing, now)

        # The tally: each output once, all of them, nothing else.
        keys = [payment.key for payment in standing]
        assert len(keys) == len(set(keys))
        assert state.paid == sum(payment.amount for payment in standing) == chain.total()
        # First-seen times never move, so neither does whether a payment came in time.
        first_seen = {payment.key: payment.first_seen for payment in stored}
        assert all(payment.first_seen == first_seen.get(payment.key, now) for payment in standing)

        # Statuses only move forward, each one passed through reported once, in order.
        assert state.status in NEXT[status]
        if state.status == status:
            assert state.transitions == ()
        else:
            assert state.transitions[-1] == state.status
            progress = [s for s in state.transitions if s in ORDER]
            assert progress == list(ORDER[ORDER.index(status) + 1 : ORDER.index(status) + 1 + len(progress)])

        # Paid exactly when the amount due (less the tolerance) came in on time.
        on_time = sum(payment.amount for payment in standing if _arrived(payment) <= EXPIRATION)
        late = any(_arrived(payment) > EXPIRATION for payment in standing)
        if status == "new":
            assert (state.status in PAID_STATUSES) == (on_time >= terms.threshold)
            assert (state.status == "expired") == (on_time < terms.threshold and now > EXPIRATION)

        assert state.exception_status == _expected_exception(state.status, state.paid, late, terms)
        assert state.watching == (state.status not in FINAL_STATUSES and now <= terms.watch_until)
        status, stored = state.status, standing


@PROPERTIES
@given(
    due=st.integers(1, 10**12),
    tolerance=st.decimals(min_value=0, max_value=99, places=2),
)
def test_the_threshold_is_the_amount_due_less_at_most_the_tolerance(due, tolerance):
    terms = Terms(due, CREATED, EXPIRATION, 1, WINDOW, tolerance)
    assert 0 < terms.threshold <= due
    # Short by no more than the tolerance, rounded in the buyer's favour by less than a satoshi.
    assert due - terms.threshold <= due * tolerance / 100 < due - terms.threshold + 1


# The amount due


def _exact_due(price: Decimal, rate: Decimal) -> int:
    """The fewest whole satoshis worth at least the price, in exact fractions."""
    return math.ceil(Fraction(price) * 100_000_000 / Fraction(rate))


@PROPERTIES
@given(
    price=st.decimals(min_value=Decimal("0.00000001"), max_value=MAX_PRICE, places=8),
    rate=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e9"), places=8),
)
def test_any_price_at_any_rate_is_due_rounded_up_to_a_whole_satoshi(price, rate):
    due = amount_due_sats(price, rate)
    assert due == _exact_due(price, rate)
    assert due * rate >= price * 100_000_000 > (due - 1) * rate


# The fixed rates' currencies, each with its own decimals, from a cent (below any dust limit) up.
_CURRENCY_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "JPY": 0}
# The test store's wallet is native segwit (p2wpkh).
DUST_LIMIT = 294
prices = st.sampled_from(sorted(_CURRENCY_DECIMALS)).flatmap(
    lambda currency: st.tuples(
        st.just(currency),
        st.one_of(
            st.decimals(min_value=Decimal(10) ** -_CURRENCY_DECIMALS[currency], max_value=1000, places=2),
            st.decimals(min_value=1, max_value=10**7, places=_CURRENCY_DECIMALS[currency]),
        ).map(lambda price, currency=currency: price.quantize(Decimal(10) ** -_CURRENCY_DECIMALS[currency])),
    )
)


@root_only
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(price=prices)
def test_any_price_through_the_api_is_due_rounded_up_and_never_below_dust(merchant, price):
    currency, amount = price
    assume(amount > 0)
    rate = get_rates().btc_price(currency)
    response = merchant.post("/invoices", {"price": str(amount), "currency": currency})
    if _exact_due(amount, rate) < DUST_LIMIT:
        assert response.status_code == 400
        assert response.json()["error"].startswith(f"price is too small: the amount due must be at least {DUST_LIMIT}")
    else:
        assert response.status_code == 200, response.text
        due = response.json()["data"]["paymentTotals"]["BTC"]
        # satoshis × (currency per BTC) against the price in currency × 10^8: no float on either side.
        assert due * rate >= amount * 10**8 > (due - 1) * rate
        assert due >= DUST_LIMIT


@root_only
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failures=st.integers(0, len(notifications.RETRY_DELAYS_MINUTES) + 1))
def test_any_number_of_failed_deliveries_retry_no_earlier_than_their_delay(
    shop, chain, watch, clock, ipn_receiver, notifications_queue, failures
):
    clock.now = FakeClock().now  # an earlier example's retries moved it on by up to a day
    path = f"/ipn-{uuid.uuid4().hex}"
    # Paid at high speed is confirmed on sight: one notification.
    created = shop.create_invoice(notificationURL=f"{ipn_receiver.url}{path}", transactionSpeed="high")
    ipn_receiver.fail(path, failures)
    chain.pay(created["bitcoinAddress"], sats(created))
    watch()
    drain(notifications_queue, clock, {created["id"]})

    [notification] = notifications.history(created["id"])
    times = [attempt["time"] for attempt in notification["attempts"]]
    retries = len(notifications.RETRY_DELAYS_MINUTES)
    assert len(times) == min(failures, retries) + 1
    waits = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    delays = [minutes * MINUTE for minutes in notifications.RETRY_DELAYS_MINUTES[: len(waits)]]
    assert all(waited >= delay for waited, delay in zip(waits, delays, strict=True))
    assert notification["state"] == ("delivered" if failures <= retries else "failed")
