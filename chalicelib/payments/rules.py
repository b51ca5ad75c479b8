"""An invoice's payment state, worked out from the payments seen: pure functions, no I/O.

The watcher feeds in what the Esplora API shows for the invoice's address; this
module decides which payments stand, how much is paid, and what BitPay status and
exceptionStatus follow. Statuses only move forward (new → paid → confirmed →
complete, new → expired, paid → invalid), so a merchant is never told a status
twice nor sees one taken back; amounts, on the other hand, always follow the chain.
"""

from dataclasses import dataclass, replace
from decimal import Decimal

CONFIRMATIONS_TO_COMPLETE = 6
# A block's timestamp may be up to two hours off the real time; a payment confirmed
# in a block older than that before the invoice existed was not made for it.
BLOCK_TIME_SLACK_MS = 2 * 3600 * 1000
_PROGRESS = ("new", "paid", "confirmed", "complete")
FINAL_STATUSES = ("complete", "invalid")


@dataclass(frozen=True)
class Payment:
    txid: str
    vout: int
    amount: int
    confirmations: int
    # When the watcher first saw it (ms).
    first_seen: int
    block_height: int | None = None
    block_time: int | None = None
    # Decided once, when it is first seen (`merge`), from what was known then.
    late: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.txid, self.vout

    @property
    def arrived(self) -> int:
        """The earliest moment it is known to have existed (a block proves it): how payments stored
        before lateness was decided on sight are judged."""
        return min(self.first_seen, self.block_time) if self.block_time is not None else self.first_seen


@dataclass(frozen=True)
class Terms:
    due: int
    created: int
    expiration: int
    target_confirmations: int
    monitoring_window_ms: int
    tolerance_percent: Decimal = Decimal(0)

    @property
    def threshold(self) -> int:
        """The least that counts as paid in full."""
        return self.due - int(self.due * self.tolerance_percent / 100)

    @property
    def watch_until(self) -> int:
        return self.expiration + self.monitoring_window_ms


@dataclass(frozen=True)
class State:
    status: str
    exception_status: str | None
    paid: int
    # Every status the invoice passed through to get here, in order (empty if unchanged).
    transitions: tuple[str, ...]
    watching: bool


def late_on_sight(terms: Terms, payment: Payment, now: int, checked_after_expiry: int | None) -> bool:
    """Whether a payment first seen `now` came after the expiration.

    The watcher's own lag must never make a buyer late: a payment is late only when
    a block shows it came after the expiration, or when an earlier check that
    answered after the expiration (`checked_after_expiry`) did not see it. One found
    at the first answered check after the expiration without a block is on time.
    """
    if now <= terms.expiration:
        return False
    if payment.block_time is not None:
        return payment.block_time > terms.expiration
    return checked_after_expiry is not None


def merge(
    terms: Terms, stored: list[Payment], seen: list[Payment], now: int, checked_after_expiry: int | None = None
) -> list[Payment]:
    """The payments that stand after a new look at the chain (answered at `now`).

    Keeps each payment's first-seen time and lateness. An unconfirmed payment that is no longer
    seen was replaced or dropped from the mempool and leaves the tally; a confirmed
    one is kept even when the answer leaves it out (an Esplora page limit or a
    misbehaving server must not erase money that was paid).
    """
    known = {payment.key: payment for payment in stored}
    merged: dict[tuple[str, int], Payment] = {}
    for payment in seen:
        if payment.block_time is not None and payment.block_time < terms.created - BLOCK_TIME_SLACK_MS:
            continue  # Funds that were at a reused address before the invoice existed.
        earlier = known.get(payment.key)
        if earlier is not None:
            merged[payment.key] = replace(payment, first_seen=earlier.first_seen, late=earlier.late)
        else:
            late = late_on_sight(terms, payment, now, checked_after_expiry)
            merged[payment.key] = replace(payment, first_seen=now, late=late)
    for key, payment in known.items():
        if key not in merged and payment.block_height is not None:
            merged[key] = payment
    return sorted(merged.values(), key=lambda payment: (payment.first_seen, payment.txid, payment.vout))


def full_amount_confirmations(payments: list[Payment], threshold: int) -> int | None:
    """The most confirmations that the full amount has (None when it is not all there).

    Counting only payments with at least that many confirmations: an unconfirmed top-up
    does not hold back a full payment that already confirmed.
    """
    if sum(payment.amount for payment in payments) < threshold:
        return None
    for confirmations in sorted({payment.confirmations for payment in payments}, reverse=True):
        if sum(payment.amount for payment in payments if payment.confirmations >= confirmations) >= threshold:
            return confirmations
    # Reached only with no payments and nothing due (a threshold of 0), which `evaluate` never asks
    # about: any value here is equivalent for mutation testing.
    return 0  # pragma: no mutate


def _progress_status(confirmations: int, target: int) -> str:
    if confirmations >= CONFIRMATIONS_TO_COMPLETE:
        return "complete"
    return "confirmed" if confirmations >= target else "paid"


def _path(previous: str, reached: str) -> tuple[str, ...]:
    """The statuses passed through from `previous` to `reached` along new → paid → confirmed → complete."""
    # `evaluate` calls this with two statuses of the progression only, so this branch is a guard
    # that no caller reaches (its mutants are equivalent).
    if previous not in _PROGRESS or reached not in _PROGRESS:  # pragma: no mutate
        return () if previous == reached else (reached,)  # pragma: no mutate
    return _PROGRESS[_PROGRESS.index(previous) + 1 : _PROGRESS.index(reached) + 1]


def evaluate(terms: Terms, previous: str, payments: list[Payment], now: int, *, expiry_answered: bool = True) -> State:
    """The state that follows from `payments` at `now`.

    `expiry_answered`: whether the chain has answered a check since the expiration. Until
    it has, an `expired` status was decided from the clock alone (the chain server was
    down), and an on-time payment the chain then shows still makes the invoice paid.
    """
    on_time = [payment for payment in payments if not payment.late]
    late = [payment for payment in payments if payment.late]
    paid = sum(payment.amount for payment in payments)
    # Nothing due can never count as paid: invoices.create refuses it, and this holds even if one got stored.
    confirmations = full_amount_confirmations(on_time, terms.threshold) if terms.due > 0 else None

    transitions: tuple[str, ...] = ()
    status = previous
    start = "new" if previous == "expired" and not expiry_answered else previous
    if start in _PROGRESS:
        reached = start
        if confirmations is not None:
            candidate = _progress_status(confirmations, terms.target_confirmations)
            reached = max(start, candidate, key=_PROGRESS.index)
        transitions = _path(start, reached)
        status = reached
        if status == "new" and now > terms.expiration:
            status = "expired"
            transitions = (*transitions, "expired") if previous != "expired" else transitions
        elif status in ("paid", "confirmed") and now > terms.watch_until and not confirmations:
            # It was paid (0-conf for "high" speed) but the full amount never got a confirmation.
            status, transitions = "invalid", (*transitions, "invalid")

    return State(
        status=status,
        exception_status=_exception_status(status, paid, late, terms),
        paid=paid,
        transitions=transitions,
        watching=status not in FINAL_STATUSES and now <= terms.watch_until,
    )


def _exception_status(status: str, paid: int, late: list[Payment], terms: Terms) -> str | None:
    # Expired is final: a full amount that reached it, or anything paid after expiry, came too late.
    if status == "expired" and (late or paid >= terms.threshold):
        return "paidLate"
    if paid > terms.due:
        return "paidOver"
    if 0 < paid < terms.threshold:
        return "paidPartial"
    return None
