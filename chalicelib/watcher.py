"""The payment watcher: runs every minute, asks Esplora about the invoices still watched, records what changed.

Invoices to watch come from a sparse index (only watched invoices carry its key),
most overdue first. Each is written with a condition on its version: when two
watchers (or a watcher re-run after a crash) race, the loser reads the invoice
again and works it out anew from what it saw, so a payment is never counted twice
and no update is lost. An invoice that did not change is not written at all.
"""

import logging
import math
import time
from dataclasses import dataclass

from . import notifications, payments
from .esplora import EsploraClient, EsploraError
from .models import InvoiceModel, PaymentAttribute, now_ms
from .settings import get_settings
from .stores import TARGET_CONFIRMATIONS

logger = logging.getLogger(__name__)

# An expired invoice is only watched for late payments: every few minutes is enough.
LATE_PAYMENT_CHECK_MS = 10 * 60_000
MAX_CONFLICTS = 3
# Lambda stops a run at its timeout, so no new check starts once less than this is left: a check
# already started still has its Esplora requests and its write to finish. What is left waits for
# the next run, a minute later (.chalice/config.json gives the watcher 60 s, so 40 s of checks).
FINISH_RESERVE_SECONDS = 20.0


@dataclass
class Report:
    checked: int = 0
    changed: int = 0
    # Writes lost to another writer and redone: evidence of races, never of double counting.
    conflicts: int = 0
    errors: int = 0
    skipped: int = 0


def default_client() -> EsploraClient:
    settings = get_settings()
    return EsploraClient(
        settings.esplora_url, concurrency=settings.esplora_concurrency, timeout=settings.esplora_timeout_seconds
    )


def run(now: int | None = None, client: EsploraClient | None = None, remaining_seconds: float | None = None) -> Report:
    """One pass over every invoice due a check at `now` (ms, the current time unless given).

    `remaining_seconds`: how long the run may take (the Lambda invocation's time left); no limit when None.
    """
    from concurrent.futures import ThreadPoolExecutor

    deadline = math.inf if remaining_seconds is None else time.monotonic() + remaining_seconds - FINISH_RESERVE_SECONDS
    settings = get_settings()
    now = now if now is not None else now_ms()
    client = client or default_client()
    report = Report()
    due = list(InvoiceModel.by_watch.query(settings.bitcoin_network, InvoiceModel.next_check <= now))
    if not due:
        return report
    try:
        tip = client.tip_height()
    except EsploraError as exc:
        logger.warning("esplora unavailable, nothing checked: %s", exc)
        report.errors = len(due)
        return report

    def check(invoice: InvoiceModel) -> tuple[str, int]:
        if time.monotonic() > deadline:
            return "skipped", 0
        return _check(invoice, client, tip, now)

    # Each worker mostly waits on HTTP; the client's own semaphore bounds requests in flight.
    with ThreadPoolExecutor(max_workers=settings.esplora_concurrency) as pool:
        results = list(pool.map(check, due))
    outcomes = [outcome for outcome, _ in results]
    report.conflicts = sum(conflicts for _, conflicts in results)
    report.checked = sum(1 for outcome in outcomes if outcome in ("changed", "unchanged"))
    report.changed = outcomes.count("changed")
    report.errors = outcomes.count("error")
    report.skipped = outcomes.count("skipped")
    return report


def _check(invoice: InvoiceModel, client: EsploraClient, tip: int, now: int) -> tuple[str, int]:
    """What became of the invoice, and how many writes were lost to another writer and redone."""
    try:
        seen = client.payments_to(invoice.address, tip, now)
    except EsploraError as exc:
        # Nothing is concluded from an unanswered question: the invoice is looked at again next run.
        logger.warning("invoice %s not checked: %s", invoice.invoice_id, exc)
        return "error", 0
    for conflicts in range(MAX_CONFLICTS):
        outcome = _record(invoice, seen, now)
        if outcome is not None:
            return outcome, conflicts
        invoice = InvoiceModel.get(invoice.invoice_id, consistent_read=True)
    logger.warning("invoice %s kept changing under the watcher; next run", invoice.invoice_id)
    return "error", MAX_CONFLICTS


def terms_of(invoice: InvoiceModel) -> payments.Terms:
    settings = get_settings()
    return payments.Terms(
        due=invoice.btc_due_sats,
        created=invoice.created,
        expiration=invoice.expiration,
        target_confirmations=TARGET_CONFIRMATIONS[invoice.transaction_speed],
        monitoring_window_ms=settings.monitoring_window_seconds * 1000,
        tolerance_percent=settings.payment_tolerance_percent,
    )


def stored_payments(invoice: InvoiceModel) -> list[payments.Payment]:
    return [payments.Payment(**payment.attribute_values) for payment in invoice.payments]


def _record(invoice: InvoiceModel, seen: list[payments.Payment], now: int) -> str | None:
    """Write what changed; "changed" or "unchanged", None when another writer got there first."""
    terms = terms_of(invoice)
    stored = stored_payments(invoice)
    standing = payments.merge(terms, stored, seen, now)
    state = payments.evaluate(terms, invoice.status, standing, now)
    received = bool({payment.key for payment in standing} - {payment.key for payment in stored})
    changed = (
        standing != stored
        or state.status != invoice.status
        or state.exception_status != invoice.exception_status
        or (not state.watching and invoice.watch_network is not None)
    )
    late_check = state.watching and state.status == "expired"
    if not changed and not late_check:
        return "unchanged"

    # The notifications describe the invoice as it is about to be written.
    invoice.status = state.status
    invoice.store_status = f"{invoice.store_id}#{state.status}"
    invoice.exception_status = state.exception_status
    invoice.btc_paid_sats = state.paid
    invoice.payments = [PaymentAttribute(**vars(payment)) for payment in standing]
    actions = [
        InvoiceModel.status.set(invoice.status),
        InvoiceModel.store_status.set(invoice.store_status),
        InvoiceModel.exception_status.set(invoice.exception_status),
        InvoiceModel.btc_paid_sats.set(invoice.btc_paid_sats),
        InvoiceModel.payments.set(invoice.payments),
    ]
    if state.watching:
        actions.append(InvoiceModel.next_check.set(now + LATE_PAYMENT_CHECK_MS if late_check else now))
    else:
        actions += [InvoiceModel.watch_network.remove(), InvoiceModel.next_check.remove()]
    events = notifications.events_for(invoice, state.transitions, received)
    if not notifications.commit(invoice, actions, events, now):
        return None
    return "changed" if changed else "unchanged"
