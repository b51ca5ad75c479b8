"""The payment watcher: a planner picks the invoices due a check, checkers check them.

The planner (every minute) reads the sharded watch index lazily, only the few
attributes it decides from, and sends the ids of the invoices due to the checks
queue in small batches: every invoice still open (before its expiry, or not yet
answered for since) on every run, so the final check at the expiry decides paid
or expired; the others (expired, or paid and waiting for confirmations) on a
back-off computed from their age, at most `late_checks_per_run` of them, after
the open ones. Its decision needs no state of its own: a late check that finds
nothing writes nothing.

A checker (on the checks queue, with bounded concurrency) reads its invoices,
asks Esplora and writes only the fields that changed, with a condition on the
invoice's version: when two checks race, the loser reads the invoice again and
works it out anew, so a payment is never counted twice and no update is lost.
One invoice's failure (Esplora, a throttled write) is logged and its check
retried by a later message; it never stops the others.
"""

import json
import logging
import random
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache

from pynamodb.exceptions import PynamoDBException

from chalicelib.billing.stores import TARGET_CONFIRMATIONS
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel, PaymentAttribute, now_ms, watch_partition, watch_partitions
from chalicelib.payments import rules as payments
from chalicelib.payments.esplora import EsploraClient, EsploraError, payments_in
from chalicelib.settings import get_settings

logger = logging.getLogger(__name__)

MINUTE_MS = 60_000
# The planner's schedule (jobs.py): a late check is due in the run that crosses its time.
RUN_INTERVAL_MS = MINUTE_MS
# A late invoice is checked every `age / 4`, in powers of two of the shortest interval (so each
# longer interval's times are times of the shorter ones), up to the longest for its status:
# money waiting for confirmations is looked at more often than an invoice nobody paid.
MIN_LATE_INTERVAL_MS = 2 * MINUTE_MS
MAX_LATE_INTERVAL_MS = {"paid": 4 * MINUTE_MS, "confirmed": 8 * MINUTE_MS}
DEFAULT_MAX_LATE_INTERVAL_MS = 128 * MINUTE_MS
# Invoice ids per queue message; the checker takes a few messages per invocation (jobs.py).
CHECK_BATCH = 20
SEND_BATCH = 10  # SQS's most messages per SendMessageBatch
RETRY_DELAY_SECONDS = 30
MAX_ATTEMPTS = 3
MAX_CONFLICTS = 3
# Writes at once while a batch is recorded. More than Esplora answers in flight: a write can take longer
# than an answer (DynamoDB throttling and its SDK's back-off, a busy moment) and a batch's last check
# at expiry writes nearly every invoice; the batch then still ends with its last answer, not after a
# queue of writes, and the next batch's Esplora requests are not held back. Within models.CONNECTIONS.
RECORDERS = 24
# What an index item carries (InvoicesWatched's projection and keys).
_PLANNED_ATTRIBUTES = ["invoice_id", "status", "expiration", "checked_after_expiry", "address"]


@dataclass(frozen=True)
class Watched:
    """An invoice as the watch index shows it to the planner."""

    invoice_id: str
    status: str
    expiration: int
    checked_after_expiry: int | None
    # Carried to the checker, which asks Esplora about it while it reads the invoice.
    address: str | None = None


@dataclass
class Plan:
    open: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    # The planned invoices' addresses, as the watch index has them (None before it carried them).
    addresses: dict[str, str | None] = field(default_factory=dict)
    # Late checks due but left to a later run by the cap.
    deferred: int = 0
    watched: int = 0


@dataclass
class Report:
    checked: int = 0
    changed: int = 0
    # Writes lost to another writer and redone: evidence of races, never of double counting.
    conflicts: int = 0
    errors: int = 0
    failed: list[str] = field(default_factory=list)

    def add(self, other: "Report") -> None:
        self.checked += other.checked
        self.changed += other.changed
        self.conflicts += other.conflicts
        self.errors += other.errors
        self.failed += other.failed


# Planning


def watched(network: str | None = None, urgent: bool | None = None) -> Iterator[Watched]:
    """The watched invoices of the network, from each shard of the watch index: the open ones
    (`urgent`), the waiting ones (not `urgent`), or all, open ones first."""
    for page in watched_pages(network, urgent):
        yield from page


def watched_pages(network: str | None = None, urgent: bool | None = None) -> Iterator[list[Watched]]:
    """`watched`, a page of one partition's Query at a time.

    The low-level Query answer is read as it is: building model objects for thousands of
    items would cost the planner most of its run.
    """
    network = network or get_settings().bitcoin_network
    connection = InvoiceModel._get_connection()
    kinds = [True, False] if urgent is None else [urgent]
    for partition in [partition for kind in kinds for partition in watch_partitions(network, kind)]:
        start = None
        while True:
            page = connection.query(
                partition,
                index_name=InvoiceModel.by_watch.Meta.index_name,
                attributes_to_get=_PLANNED_ATTRIBUTES,
                exclusive_start_key=start,
            )
            yield [_watched(item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                break


def _watched(item: dict) -> Watched:
    checked, address = item.get("checked_after_expiry"), item.get("address")
    return Watched(
        invoice_id=item["invoice_id"]["S"],
        status=item["status"]["S"],
        expiration=int(item["expiration"]["N"]),
        checked_after_expiry=int(checked["N"]) if checked else None,
        address=address["S"] if address else None,
    )


def late_interval(age_ms: int, status: str) -> int:
    """How often an invoice `age_ms` past its expiry is checked."""
    interval = MIN_LATE_INTERVAL_MS
    while interval * 8 <= age_ms:
        interval *= 2
    return min(interval, MAX_LATE_INTERVAL_MS.get(status, DEFAULT_MAX_LATE_INTERVAL_MS))


def is_open(invoice: Watched, now: int) -> bool:
    """Checked on every run: before its expiry, and until the chain has answered a check after it."""
    return now <= invoice.expiration or invoice.checked_after_expiry is None


def late_check_due(invoice: Watched, now: int, window_ms: int) -> bool:
    age = now - invoice.expiration
    if age > window_ms:
        return True  # its last check, which takes it off the watch
    interval = late_interval(age, invoice.status)
    return age // interval != (age - RUN_INTERVAL_MS) // interval


def plan(now: int | None = None, send: bool = True) -> Plan:
    """Pick the invoices due a check at `now` and (unless `send` is false) queue them: the open ones
    page by page as their partitions are read, so checkers start on the first page, then the late ones."""
    settings = get_settings()
    now = now if now is not None else now_ms()
    window = settings.monitoring_window_seconds * 1000
    result = Plan()
    queued = 0
    for page in watched_pages(settings.bitcoin_network, urgent=True):
        result.watched += len(page)
        _take(result.open, result.addresses, page)
        # Whole messages only, the rest with the next page's: a checker's batch of messages is then as
        # large as any other's and the checkers finish together.
        whole = queued + (len(result.open) - queued) // CHECK_BATCH * CHECK_BATCH
        if send and whole > queued:
            _queue(result.open[queued:whole], True, result.addresses)
            queued = whole
    if send:
        _queue(result.open[queued:], True, result.addresses)
        queued = len(result.open)
    late: list[Watched] = []
    reopened: list[Watched] = []
    for invoice in watched(settings.bitcoin_network, urgent=False):
        result.watched += 1
        # Made before open invoices had partitions of their own, or not yet moved there.
        if is_open(invoice, now):
            reopened.append(invoice)
        elif late_check_due(invoice, now, window):
            late.append(invoice)
    # Which late ones wait when there are too many is left to chance, so no invoice always does;
    # money waiting for confirmations goes first.
    random.shuffle(late)
    late.sort(key=lambda invoice: invoice.status not in MAX_LATE_INTERVAL_MS)
    chosen = late[: settings.late_checks_per_run]
    result.deferred = len(late) - len(chosen)
    _take(result.open, result.addresses, reopened)
    _take(result.late, result.addresses, chosen)
    if send:
        _queue(result.open[queued:], True, result.addresses)
        _queue(result.late, False, result.addresses)
    return result


def _take(planned: list[str], addresses: dict[str, str | None], invoices: list[Watched]) -> None:
    planned.extend(invoice.invoice_id for invoice in invoices)
    addresses.update((invoice.invoice_id, invoice.address) for invoice in invoices)


def _queue(invoice_ids: list[str], urgent: bool, addresses: dict[str, str | None]) -> None:
    messages = [_message(batch, urgent, addresses) for batch in _chunks(invoice_ids, CHECK_BATCH)]
    for group in _chunks(messages, SEND_BATCH):
        _send(group)


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _message(invoice_ids: list[str], urgent: bool, addresses: dict[str, str | None], attempt: int = 1) -> str:
    known = [addresses.get(invoice_id) for invoice_id in invoice_ids]
    return json.dumps({"invoices": invoice_ids, "addresses": known, "open": urgent, "attempt": attempt})


@lru_cache(maxsize=1)
def _checks_queue_url() -> str:
    settings = get_settings()
    return settings.checks_queue_url or notifications.sqs().get_queue_url(QueueName=settings.checks_queue)["QueueUrl"]


def _send(bodies: list[str], delay: int = 0) -> None:
    entries = [{"Id": str(number), "MessageBody": body, "DelaySeconds": delay} for number, body in enumerate(bodies)]
    answer = notifications.sqs().send_message_batch(QueueUrl=_checks_queue_url(), Entries=entries)
    if answer.get("Failed"):
        raise RuntimeError(f"the checks queue refused {len(answer['Failed'])} messages: {answer['Failed'][:1]}")


# Checking


def default_client() -> EsploraClient:
    """This checker's client. A Lambda container runs one checker at a time (`make run` and the bench run
    them as threads): one client each, whose connections (their TLS set up once) and pacing outlive an
    invocation."""
    settings = get_settings()
    share = settings.esplora_rate_limit / settings.check_concurrency
    key = (settings.esplora_url, settings.esplora_concurrency, share or None, settings.esplora_timeout_seconds)
    if getattr(_checker, "key", None) != key:
        url, concurrency, requests_per_second, timeout = key
        _checker.client = EsploraClient(
            url, concurrency=concurrency, requests_per_second=requests_per_second, timeout=timeout
        )
        _checker.key = key
    return _checker.client


_checker = threading.local()


def handle_messages(
    messages: list[tuple[str, str]], now: int | None = None, client: EsploraClient | None = None
) -> tuple[list[str], Report]:
    """A checker's work for (message id, body) pairs: the ids of the messages SQS must deliver again, and what
    the checks did. Open invoices are checked first; failed ones go back to the queue in a new message.
    """
    batches, addresses = [], {}
    for message_id, body in messages:
        try:
            parsed = json.loads(body)
            invoice_ids = [str(i) for i in parsed["invoices"]]
            batches.append((message_id, invoice_ids, bool(parsed["open"]), int(parsed["attempt"])))
        except (ValueError, TypeError, KeyError):
            logger.error("dropping a malformed check message: %.200s", body)
            continue
        # Messages queued before the plan carried addresses have none: their invoices are read first.
        known = parsed.get("addresses")
        if isinstance(known, list):
            addresses.update((i, a) for i, a in zip(invoice_ids, known, strict=False) if isinstance(a, str))
    batches.sort(key=lambda batch: not batch[2])
    invoice_ids = [invoice_id for _, invoice_ids, _, _ in batches for invoice_id in invoice_ids]
    report = check(invoice_ids, now, client, addresses)
    failed = set(report.failed)
    redeliver = []
    for message_id, invoice_ids, urgent, attempt in batches:
        retry = [invoice_id for invoice_id in invoice_ids if invoice_id in failed]
        if not retry:
            continue
        if attempt >= MAX_ATTEMPTS:
            logger.warning("giving up on checking %s until the next plan", retry)
            continue
        try:
            _send([_message(retry, urgent, addresses, attempt + 1)], delay=RETRY_DELAY_SECONDS)
        except Exception:
            logger.exception("could not queue the retry of %s", retry)
            redeliver.append(message_id)
    return redeliver, report


def check(
    invoice_ids: list[str],
    now: int | None = None,
    client: EsploraClient | None = None,
    addresses: dict[str, str] | None = None,
) -> Report:
    """Check these invoices at `now` (ms, the current time unless given), in this order. Esplora is asked
    about the `addresses` the plan knew while the invoices are read, so its requests start at once."""
    settings = get_settings()
    now = now if now is not None else now_ms()
    client = client or default_client()
    report = Report()
    # Overlapping plans name an invoice twice; BatchGetItem refuses a key twice, and one check is enough.
    invoice_ids = list(dict.fromkeys(invoice_ids))
    if not invoice_ids:
        return report
    addresses = addresses or {}
    # Askers wait on Esplora (the client's own semaphore and pacing bound what is in flight); recorders
    # take each answer as it comes and write, so a write never leaves an Esplora slot idle.
    asking = ThreadPoolExecutor(max_workers=settings.esplora_concurrency)
    recording = ThreadPoolExecutor(max_workers=RECORDERS)
    with asking, recording:
        tip_asked = asking.submit(client.tip_height)
        asked = {i: asking.submit(client.address_transactions, addresses[i]) for i in invoice_ids if i in addresses}
        try:
            # Eventually consistent, at half the price: every write is conditioned on the version read, so a
            # stale copy can only lose its write and be read again (consistently) before it is worked out anew.
            read = InvoiceModel.batch_get(invoice_ids, consistent_read=False)
            found = {invoice.invoice_id: invoice for invoice in read}
        except PynamoDBException as exc:
            logger.warning("could not read the invoices to check: %s", exc)
            report.errors, report.failed = len(invoice_ids), list(invoice_ids)
            _cancel(asked)
            return report
        try:
            tip = tip_asked.result()
        except EsploraError as exc:
            # Expiry is still decided from the clock (and notified); payments wait for an answer, and
            # the questions not yet sent are not sent to a server that does not answer.
            logger.warning("esplora unavailable, expiring from the clock only: %s", exc)
            tip = None
            _cancel(asked)
        # An invoice leaves the watch after its message was sent: nothing to do.
        due = [found[invoice_id] for invoice_id in invoice_ids if invoice_id in found]
        due = [invoice for invoice in due if invoice.watch_network is not None]

        def work(invoice: InvoiceModel) -> tuple[str, int]:
            early = asked.get(invoice.invoice_id) if addresses.get(invoice.invoice_id) == invoice.address else None
            return _check(invoice, client, tip, now, early)

        results = list(recording.map(work, due))
    for invoice, (outcome, conflicts) in zip(due, results, strict=True):
        report.conflicts += conflicts
        if outcome == "error":
            report.errors += 1
            report.failed.append(invoice.invoice_id)
        else:
            report.checked += 1
            report.changed += outcome == "changed"
    return report


def _cancel(asked: dict[str, Future]) -> None:
    for answer in asked.values():
        answer.cancel()


def _check(
    invoice: InvoiceModel, client: EsploraClient, tip: int | None, now: int, asked: Future | None = None
) -> tuple[str, int]:
    """What became of the invoice ("changed", "unchanged" or "error"), and how many writes were redone.
    `asked`, when given, is the answer about its address already requested."""
    seen = None
    try:
        if tip is not None:
            transactions = asked.result() if asked is not None else client.address_transactions(invoice.address)
            seen = payments_in(transactions, invoice.address, tip, now)
    except EsploraError as exc:
        logger.warning("invoice %s not checked: %s", invoice.invoice_id, exc)
    try:
        for conflicts in range(MAX_CONFLICTS):
            outcome = _record(invoice, seen, now)
            if outcome is not None:
                # Without an answer the check is still to be done, whatever the clock decided.
                return (outcome if seen is not None else "error"), conflicts
            invoice = InvoiceModel.get(invoice.invoice_id, consistent_read=True)
    except PynamoDBException as exc:
        logger.warning("invoice %s not recorded: %s", invoice.invoice_id, exc)
        return "error", 0
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
    stored = []
    for attribute in invoice.payments:
        values = dict(attribute.attribute_values)
        late = values.pop("late", None)
        payment = payments.Payment(**values)
        # Recorded before lateness was decided on sight: judged by when it arrived, as it was then.
        stored.append(replace(payment, late=payment.arrived > invoice.expiration if late is None else late))
    return stored


def _record(invoice: InvoiceModel, seen: list[payments.Payment] | None, now: int) -> str | None:
    """Write what changed; "changed" or "unchanged", None when another writer got there first.

    `seen` is None when Esplora did not answer: then only the clock speaks, and all it may
    decide is that an unpaid invoice expired.
    """
    terms = terms_of(invoice)
    stored = stored_payments(invoice)
    answered_before = invoice.checked_after_expiry
    standing = stored if seen is None else payments.merge(terms, stored, seen, now, answered_before)
    state = payments.evaluate(terms, invoice.status, standing, now, expiry_answered=answered_before is not None)
    if seen is None and state.transitions != ("expired",):
        return "unchanged"
    checked_after_expiry = answered_before
    if seen is not None and answered_before is None and now > invoice.expiration:
        checked_after_expiry = now
    received = bool({payment.key for payment in standing} - {payment.key for payment in stored})

    # Only the fields that changed; the notifications describe the invoice as it is about to be written.
    actions = []
    if state.status != invoice.status:
        invoice.status = state.status
        invoice.store_status = f"{invoice.store_id}#{state.status}"
        actions += [InvoiceModel.status.set(invoice.status), InvoiceModel.store_status.set(invoice.store_status)]
    if state.exception_status != invoice.exception_status:
        invoice.exception_status = state.exception_status
        actions.append(InvoiceModel.exception_status.set(invoice.exception_status))
    if state.paid != invoice.btc_paid_sats:
        invoice.btc_paid_sats = state.paid
        actions.append(InvoiceModel.btc_paid_sats.set(invoice.btc_paid_sats))
    if standing != stored:
        invoice.payments = [PaymentAttribute(**vars(payment)) for payment in standing]
        actions.append(InvoiceModel.payments.set(invoice.payments))
    if checked_after_expiry != answered_before:
        invoice.checked_after_expiry = checked_after_expiry
        actions.append(InvoiceModel.checked_after_expiry.set(checked_after_expiry))
        if state.watching:
            # No longer open: it joins the invoices waiting for late payments and confirmations.
            network = invoice.watch_network.split("#", 1)[0]
            invoice.watch_network = watch_partition(network, invoice.invoice_id, urgent=False)
            actions.append(InvoiceModel.watch_network.set(invoice.watch_network))
    if not state.watching:
        actions += [InvoiceModel.watch_network.remove(), InvoiceModel.next_check.remove()]
    if not actions:
        return "unchanged"
    events = notifications.events_for(invoice, state.transitions, received)
    if not notifications.commit(invoice, actions, events, now):
        return None
    return "changed"
