"""The payment state machine on its own: from payments seen to BitPay status, exceptionStatus and amounts."""

from decimal import Decimal

import pytest

from chalicelib.payments.rules import BLOCK_TIME_SLACK_MS, Payment, Terms, evaluate, full_amount_confirmations, merge

MINUTE = 60_000
CREATED = 1_700_000_000_000
EXPIRATION = CREATED + 15 * MINUTE
WINDOW = 24 * 60 * MINUTE
DUE = 100_000


def terms(target: int = 1, tolerance: str = "0") -> Terms:
    return Terms(
        due=DUE,
        created=CREATED,
        expiration=EXPIRATION,
        target_confirmations=target,
        monitoring_window_ms=WINDOW,
        tolerance_percent=Decimal(tolerance),
    )


def payment(amount: int, confirmations: int = 0, seen: int = CREATED + MINUTE, txid: str = "a", vout: int = 0):
    height = 800_000 - confirmations + 1 if confirmations else None
    block_time = (seen + MINUTE) // 1000 * 1000 if confirmations else None
    return Payment(txid, vout, amount, confirmations, seen, height, block_time)


def test_nothing_paid_stays_new_until_expiration_then_expires():
    before = evaluate(terms(), "new", [], EXPIRATION)
    assert (before.status, before.exception_status, before.paid, before.transitions) == ("new", None, 0, ())
    after = evaluate(terms(), "new", [], EXPIRATION + 1)
    assert (after.status, after.exception_status, after.transitions, after.watching) == (
        "expired",
        None,
        ("expired",),
        True,
    )
    assert not evaluate(terms(), "expired", [], EXPIRATION + WINDOW + 1).watching


def test_exact_payment_moves_through_paid_confirmed_complete():
    unconfirmed = evaluate(terms(), "new", [payment(DUE)], CREATED + 2 * MINUTE)
    assert (unconfirmed.status, unconfirmed.transitions, unconfirmed.exception_status) == ("paid", ("paid",), None)
    one = evaluate(terms(), "paid", [payment(DUE, 1)], CREATED + 12 * MINUTE)
    assert (one.status, one.transitions) == ("confirmed", ("confirmed",))
    six = evaluate(terms(), "confirmed", [payment(DUE, 6)], CREATED + 70 * MINUTE)
    assert (six.status, six.transitions, six.watching) == ("complete", ("complete",), False)


def test_a_watcher_that_missed_steps_reports_every_status_passed_through():
    state = evaluate(terms(), "new", [payment(DUE, 6)], CREATED + 80 * MINUTE)
    assert state.transitions == ("paid", "confirmed", "complete")


@pytest.mark.parametrize(("speed", "target", "statuses"), [("high", 0, ("paid", "confirmed")), ("low", 6, ("paid",))])
def test_transaction_speed_sets_the_confirmations_for_confirmed(speed, target, statuses):
    assert evaluate(terms(target), "new", [payment(DUE)], CREATED + MINUTE).transitions == statuses
    assert evaluate(terms(target), "paid", [payment(DUE, 5)], CREATED + MINUTE).status == (
        "confirmed" if target <= 5 else "paid"
    )


def test_partial_payment_keeps_new_with_paid_partial_then_completes():
    first = [payment(40_000, txid="a")]
    partial = evaluate(terms(), "new", first, CREATED + 2 * MINUTE)
    assert (partial.status, partial.exception_status, partial.paid, partial.transitions) == (
        "new",
        "paidPartial",
        40_000,
        (),
    )
    both = [*first, payment(60_000, txid="b", seen=CREATED + 5 * MINUTE)]
    complete = evaluate(terms(), "new", both, CREATED + 6 * MINUTE)
    assert (complete.status, complete.exception_status, complete.paid) == ("paid", None, DUE)


def test_partial_payment_that_is_never_completed_expires_as_paid_partial():
    state = evaluate(terms(), "new", [payment(40_000)], EXPIRATION + 1)
    assert (state.status, state.exception_status) == ("expired", "paidPartial")


def test_overpayment_is_paid_over():
    state = evaluate(terms(), "new", [payment(DUE + 1)], CREATED + 2 * MINUTE)
    assert (state.status, state.exception_status, state.paid) == ("paid", "paidOver", DUE + 1)


def test_tolerance_accepts_a_small_shortfall_as_paid_in_full():
    short = [payment(DUE - 1_000)]
    assert evaluate(terms(tolerance="0"), "new", short, CREATED + MINUTE).status == "new"
    state = evaluate(terms(tolerance="1"), "new", short, CREATED + MINUTE)
    assert (state.status, state.exception_status) == ("paid", None)
    assert evaluate(terms(tolerance="1"), "new", [payment(DUE - 1_001)], CREATED + MINUTE).status == "new"


def test_payment_after_expiration_is_recorded_as_paid_late():
    late = payment(DUE, seen=EXPIRATION + MINUTE)
    state = evaluate(terms(), "expired", [late], EXPIRATION + 2 * MINUTE)
    assert (state.status, state.exception_status, state.paid, state.transitions) == ("expired", "paidLate", DUE, ())
    # Seen late by the watcher, but its block proves it was paid in time.
    in_time = Payment("a", 0, DUE, 1, EXPIRATION + MINUTE, 800_000, EXPIRATION - MINUTE)
    assert evaluate(terms(), "new", [in_time], EXPIRATION + 2 * MINUTE).status == "confirmed"
    # Once recorded as expired, it stays so, and the payment is still shown as late.
    recorded = evaluate(terms(), "expired", [in_time], EXPIRATION + 2 * MINUTE)
    assert (recorded.status, recorded.exception_status) == ("expired", "paidLate")


def test_paid_but_never_confirmed_becomes_invalid_at_the_end_of_the_window():
    still = evaluate(terms(), "paid", [payment(DUE)], EXPIRATION + WINDOW)
    assert (still.status, still.watching) == ("paid", True)
    state = evaluate(terms(), "paid", [payment(DUE)], EXPIRATION + WINDOW + 1)
    assert (state.status, state.transitions, state.watching) == ("invalid", ("invalid",), False)
    # A zero-confirmation "confirmed" (high speed) that never got a block fails the same way.
    assert evaluate(terms(0), "confirmed", [payment(DUE)], EXPIRATION + WINDOW + 1).status == "invalid"
    assert evaluate(terms(0), "confirmed", [payment(DUE, 2)], EXPIRATION + WINDOW + 1).status == "confirmed"


def test_status_never_moves_back_when_a_payment_disappears():
    state = evaluate(terms(), "paid", [], CREATED + 5 * MINUTE)
    assert (state.status, state.paid, state.transitions, state.exception_status) == ("paid", 0, (), None)


def test_full_amount_confirmations_counts_the_least_confirmed_part_needed():
    assert full_amount_confirmations([payment(50_000, 3, txid="a"), payment(50_000, 1, txid="b")], DUE) == 1
    # An unconfirmed extra does not hold back a full payment that already has confirmations.
    assert full_amount_confirmations([payment(DUE, 2, txid="a"), payment(5, 0, txid="b")], DUE) == 2
    assert full_amount_confirmations([payment(DUE - 1, 9)], DUE) is None


def test_merge_keeps_first_seen_and_drops_replaced_unconfirmed_payments():
    now = CREATED + 10 * MINUTE
    stored = [payment(60_000, txid="kept", seen=CREATED + MINUTE), payment(40_000, txid="replaced")]
    seen = [
        Payment("kept", 0, 60_000, 1, now, 800_000, (now // 1000) * 1000),
        Payment("new", 1, 40_000, 0, now),
    ]
    merged = merge(terms(), stored, seen, now)
    assert [(p.txid, p.first_seen, p.confirmations) for p in merged] == [
        ("kept", CREATED + MINUTE, 1),
        ("new", now, 0),
    ]


def test_merge_keeps_a_confirmed_payment_the_answer_left_out():
    confirmed = payment(DUE, 3)
    assert merge(terms(), [confirmed], [], CREATED + 30 * MINUTE) == [confirmed]


def test_merge_ignores_funds_confirmed_at_the_address_long_before_the_invoice():
    old_block = CREATED - BLOCK_TIME_SLACK_MS - 1
    reused = Payment("old", 0, DUE, 500, CREATED + MINUTE, 700_000, old_block)
    recent = Payment("recent", 0, 10, 1, CREATED + MINUTE, 800_000, CREATED - MINUTE)
    assert [p.txid for p in merge(terms(), [], [reused, recent], CREATED + MINUTE)] == ["recent"]
