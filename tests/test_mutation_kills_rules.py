"""Lateness and expiry rules of chalicelib/payments/rules.py that `make mutate` found unguarded (scripts/mutate.py).

Pure tests: each fails on a change to the rules that the rest of the suite let through; the
docstring of each names it.
"""

from decimal import Decimal

from chalicelib.payments.rules import Payment, Terms, evaluate, merge

MINUTE = 60_000
CREATED = 1_700_000_000_000
EXPIRATION = CREATED + 15 * MINUTE
DUE = 100_000
TERMS = Terms(DUE, CREATED, EXPIRATION, 1, 24 * 60 * MINUTE, Decimal(0))


def unconfirmed(amount: int = DUE) -> Payment:
    return Payment("a", 0, amount, 0, 0)


def test_a_payment_seen_exactly_at_the_expiration_is_on_time_even_in_a_block_stamped_later():
    """Caught: `now < terms.expiration` (a block's timestamp may run up to two hours ahead of the real time)."""
    [payment] = merge(TERMS, [], [Payment("a", 0, DUE, 1, 0, 800_000, EXPIRATION + MINUTE)], EXPIRATION)

    assert not payment.late
    assert evaluate(TERMS, "new", [payment], EXPIRATION).status == "confirmed"


def test_a_payment_found_unconfirmed_at_the_first_answered_check_after_the_expiration_is_on_time():
    """Caught: `checked_after_expiry is None` for `is not None`, and merge not passing it on.

    The watcher's lag never makes a buyer late; but once a check after the expiration was answered
    without it, a payment seen later came too late.
    """
    first_answer = EXPIRATION + 2 * MINUTE
    [on_time] = merge(TERMS, [], [unconfirmed()], first_answer, checked_after_expiry=None)
    [late] = merge(TERMS, [], [unconfirmed()], first_answer + MINUTE, checked_after_expiry=first_answer)

    assert (on_time.late, late.late) == (False, True)
    assert evaluate(TERMS, "new", [on_time], first_answer).status == "paid"
    assert evaluate(TERMS, "new", [late], first_answer + MINUTE).exception_status == "paidLate"


def test_a_new_payment_is_first_seen_at_the_look_that_found_it():
    """Caught: merge keeping the first-seen time the answer carried instead of the time of the look."""
    now = CREATED + 3 * MINUTE

    [payment] = merge(TERMS, [], [unconfirmed()], now)

    assert payment.first_seen == now


# Expired by the clock alone: the chain server did not answer any check since the expiration.


def test_an_invoice_expired_by_the_clock_alone_is_paid_when_the_chain_then_shows_an_on_time_payment():
    """Caught: the clock's `expired` taken as final (`and False`, `!=`, the statuses misspelt)."""
    [paid_in_time] = merge(TERMS, [], [unconfirmed()], EXPIRATION - MINUTE)

    state = evaluate(TERMS, "expired", [paid_in_time], EXPIRATION + 30 * MINUTE, expiry_answered=False)

    assert (state.status, state.transitions, state.exception_status) == ("paid", ("paid",), None)


def test_an_invoice_expired_by_the_clock_alone_is_not_reported_expired_twice():
    """Caught: `(previous != "expired") or True`, and the status misspelt there."""
    state = evaluate(TERMS, "expired", [], EXPIRATION + 30 * MINUTE, expiry_answered=False)

    assert (state.status, state.transitions) == ("expired", ())


def test_a_paid_invoice_looked_at_before_any_answer_after_the_expiration_reports_nothing_again():
    """Caught: `previous != "expired" and not expiry_answered` (every status restarted from new)."""
    [payment] = merge(TERMS, [], [unconfirmed()], CREATED + MINUTE)

    state = evaluate(TERMS, "paid", [payment], CREATED + 2 * MINUTE, expiry_answered=False)

    assert (state.status, state.transitions) == ("paid", ())
