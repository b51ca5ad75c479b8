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
    # When the watcher first saw it (ms); what decides whether it came in time.
    first_seen: int
    block_height: int | None = None
    block_time: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.txid, self.vout

    @property
    def arrived(self) -> int:
        """The earliest moment it is known to have existed: a block proves it, even if the watcher was late."""
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


def merge(terms: Terms, stored: list[Payment], seen: list[Payment], now: int) -> list[Payment]:
    """The payments that stand after a new look at the chain.

    Keeps each payment's first-seen time. An unconfirmed payment that is no longer
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
        merged[payment.key] = replace(payment, first_seen=earlier.first_seen if earlier else now)
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
    # Reached only with no payments and nothing due (a threshold of 0), which no invoice has: any
    # value here is equivalent for mutation testing.
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


def evaluate(terms: Terms, previous: str, payments: list[Payment], now: int) -> State:
    on_time = [payment for payment in payments if payment.arrived <= terms.expiration]
    late = [payment for payment in payments if payment.arrived > terms.expiration]
    paid = sum(payment.amount for payment in payments)
    # Nothing due can never count as paid: invoices.create refuses it, and this holds even if one got stored.
    confirmations = full_amount_confirmations(on_time, terms.threshold) if terms.due > 0 else None

    transitions: tuple[str, ...] = ()
    status = previous
    if previous in _PROGRESS:
        reached = previous
        if confirmations is not None:
            candidate = _progress_status(confirmations, terms.target_confirmations)
            reached = max(previous, candidate, key=_PROGRESS.index)
        transitions = _path(previous, reached)
        status = reached
        if status == "new" and now > terms.expiration:
            status, transitions = "expired", (*transitions, "expired")
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
