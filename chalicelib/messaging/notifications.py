"""Notifications: what BTCPay posts to an invoice's notificationURL and emails, delivered reliably.

Which events notify, and in which form, follows BTCPay's legacy API (BitpayIPNSender):
`confirmed` always gets a plain body (the invoice's fields); fullNotifications adds a plain
body for the status events; extendedNotifications (which implies full notifications) adds
the `{event, data}` body for every event, as well as the plain ones. Shops such as the
WooCommerce plugin ask for both and act on the plain body only.

An email is a notification too, to `mailto:` the invoice's notificationEmail and the
store's contact email, for the events a merchant acts on.

Delivery is at least once. A notification is written in the same DynamoDB transaction as
the invoice change that caused it (an outbox), then an SQS message names the invoice; the
consumer posts that invoice's pending notifications, first deliveries in order, and retries
each failed one on its own schedule, so a refused notification holds none back. Every
attempt is recorded. A sweep re-queues any invoice whose message was lost, so a crash
between the transaction and SQS loses nothing. Every post carries X-Paylambda-Signature,
an HMAC-SHA256 of the exact body with the store's secret.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import math
import secrets
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from pynamodb.exceptions import PutError, TransactWriteError, UpdateError

from chalicelib.billing import invoices
from chalicelib.billing.currencies import format_amount
from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.messaging import mail
from chalicelib.models import (
    AttemptAttribute,
    InvoiceModel,
    NotificationModel,
    StoreModel,
    condition_failed,
    now_ms,
    transaction,
)
from chalicelib.security.auth import Caller
from chalicelib.settings import get_settings

logger = logging.getLogger(__name__)

# Minutes to wait after each failed attempt, BitPay's 1, 4, 9, 16, 25 and then longer:
# eleven attempts over about a day, then the notification is given up.
RETRY_DELAYS_MINUTES = (1, 4, 9, 16, 25, 60, 120, 240, 480, 480)
LEASE_MS = 2 * 60_000
# A pending notification this late has lost its queue message; the sweep sends another.
OVERDUE_MS = 15 * 60_000
MAX_SWEEP = 100
MAX_RESPONSE_BYTES = 64 * 1024
SIGNATURE_HEADER = "X-Paylambda-Signature"
MAILTO = "mailto:"
_OUTBOX = "pending"


@dataclass(frozen=True)
class Event:
    code: int
    name: str
    # The invoice status the notification reports.
    status: str


# BTCPay's InvoiceEvent codes and names.
CREATED = (1001, "invoice_created")
RECEIVED_PAYMENT = (1002, "invoice_receivedPayment")
PAID_IN_FULL = (1003, "invoice_paidInFull")
EXPIRED = (1004, "invoice_expired")
CONFIRMED = (1005, "invoice_confirmed")
COMPLETED = (1006, "invoice_completed")
MARKED_INVALID = (1008, "invoice_markedInvalid")
PAID_AFTER_EXPIRATION = (1009, "invoice_paidAfterExpiration")
MANUALLY_NOTIFIED = (1012, "invoice_manuallyNotified")
FAILED_TO_CONFIRM = (1013, "invoice_failedToConfirm")
EXPIRED_PAID_PARTIAL = (2000, "invoice_expiredPaidPartial")
MARKED_COMPLETE = (2008, "invoice_markedComplete")

_STATUS_EVENTS = {
    "paid": PAID_IN_FULL,
    "expired": EXPIRED,
    "confirmed": CONFIRMED,
    "complete": COMPLETED,
    "invalid": FAILED_TO_CONFIRM,
}
# The events that get a plain body with fullNotifications (BTCPay's list); confirmed always does.
_FULL_EVENTS = {
    event[0]
    for event in (
        PAID_IN_FULL,
        EXPIRED,
        COMPLETED,
        MARKED_INVALID,
        FAILED_TO_CONFIRM,
        EXPIRED_PAID_PARTIAL,
        MARKED_COMPLETE,
    )
}
# The events a merchant is emailed about (money arrived, settled, or needs a look), and how the subject says it.
_EMAIL_HEADLINES = {
    PAID_IN_FULL[0]: "is paid (not confirmed yet)",
    CONFIRMED[0]: "is confirmed",
    COMPLETED[0]: "is complete",
    MARKED_COMPLETE[0]: "was marked complete",
    EXPIRED_PAID_PARTIAL[0]: "expired, partly paid",
    PAID_AFTER_EXPIRATION[0]: "was paid after it expired",
}

# BitPay's IPN body: the invoice fields a receiver needs, before it re-fetches the invoice.
_NOTIFICATION_FIELDS = (
    "id", "url", "posData", "status", "price", "currency", "invoiceTime", "expirationTime", "currentTime",
    "exceptionStatus", "paymentSubtotals", "paymentTotals", "exchangeRates", "amountPaid", "orderId",
    "btcPrice", "btcPaid", "btcDue", "rate",
)  # fmt: skip
_BUYER_FIELDS = {
    "name": "buyerName", "address1": "buyerAddress1", "address2": "buyerAddress2", "locality": "buyerCity",
    "region": "buyerState", "postalCode": "buyerZip", "country": "buyerCountry", "email": "buyerEmail",
    "phone": "buyerPhone", "notify": "buyerNotify",
}  # fmt: skip


def events_for(invoice: InvoiceModel, transitions: tuple[str, ...], received_payment: bool) -> list[Event]:
    """The events of these status changes of the invoice, which holds the state about to be written.

    As BTCPay: receivedPayment on every payment (before the paidInFull it may bring), the
    status events in order, expiredPaidPartial after an expiry with a partial payment, and
    paidAfterExpiration when a payment reaches an expired invoice.
    """
    events = [Event(*RECEIVED_PAYMENT, invoice.status)] if received_payment else []
    for status in transitions:
        events.append(Event(*_STATUS_EVENTS[status], status))
        if status == "expired" and invoice.exception_status == "paidPartial":
            events.append(Event(*EXPIRED_PAID_PARTIAL, status))
    if received_payment and invoice.status == "expired" and invoice.exception_status == "paidLate":
        events.append(Event(*PAID_AFTER_EXPIRATION, invoice.status))
    return events


def _full_view(invoice: InvoiceModel) -> dict:
    return invoices.full_view(invoice, invoice.base_url or get_settings().public_base_url or "")


def notification_view(invoice: InvoiceModel, status: str, now: int) -> dict:
    view = _full_view(invoice)
    body = {key: view[key] for key in _NOTIFICATION_FIELDS if key in view}
    body["status"] = status
    body["currentTime"] = now
    buyer = view.get("buyer", {})
    body["buyerFields"] = {_BUYER_FIELDS[name]: value for name, value in buyer.items() if name in _BUYER_FIELDS}
    if invoice.btc_paid_sats:
        body["transactionCurrency"] = "BTC"
    return body


def _deliveries(invoice: InvoiceModel, event: Event, now: int) -> list[tuple[str, str]]:
    """(url, body) of each notification the event sends: plain before extended, as BTCPay posts them."""
    deliveries = []
    if invoice.notification_url:
        view = notification_view(invoice, event.status, now)
        extended = invoice.extended_notifications
        full = invoice.full_notifications or extended
        # A manual resend goes out once, in the invoice's own form.
        plain = event.code == CONFIRMED[0] or (full and event.code in _FULL_EVENTS)
        plain = plain or (event.code == MANUALLY_NOTIFIED[0] and not extended)
        if plain:
            deliveries.append((invoice.notification_url, json.dumps(view)))
        if extended:
            wrapped = {"event": {"code": event.code, "name": event.name}, "data": view}
            deliveries.append((invoice.notification_url, json.dumps(wrapped)))
    recipients = list(dict.fromkeys(filter(None, (invoice.notification_email, invoice.contact_email))))
    if recipients and event.code in _EMAIL_HEADLINES and mail.enabled():
        deliveries.append((MAILTO + ",".join(recipients), json.dumps(_email(invoice, event))))
    return deliveries


def _email(invoice: InvoiceModel, event: Event) -> dict:
    view = _full_view(invoice)
    headline = _EMAIL_HEADLINES[event.code]
    lines = [
        f"Invoice {invoice.invoice_id} {headline}.",
        "",
        f"Price: {format_amount(invoice.price, invoice.currency)}",
        f"Paid: {format_amount(view['btcPaid'], 'BTC')}, still due: {format_amount(view['btcDue'], 'BTC')}",
        f"Status: {event.status}" + (f" ({invoice.exception_status})" if invoice.exception_status else ""),
    ]
    if invoice.order_id:
        lines.append(f"Order: {invoice.order_id}")
    lines.append(f"Invoice: {view['url']}")
    return {"subject": f"Invoice {invoice.invoice_id} {headline}", "text": "\n".join(lines) + "\n"}


def _outbox(invoice: InvoiceModel, events: list[Event], now: int) -> list[NotificationModel]:
    pending = [(event, delivery) for event in events for delivery in _deliveries(invoice, event, now)]
    return [
        NotificationModel(
            invoice.invoice_id,
            invoice.notification_count + number,
            store_id=invoice.store_id,
            event_code=event.code,
            event_name=event.name,
            url=url,
            body=body,
            created=now,
            outbox=_OUTBOX,
            next_attempt=now,
        )
        for number, (event, (url, body)) in enumerate(pending, start=1)
    ]


def _queue_after_commit(invoice_id: str, now: int) -> None:
    try:
        enqueue(invoice_id, due=now, now=now)
    except Exception:
        logger.exception("could not queue notifications of %s; the sweep will", invoice_id)


def commit(invoice: InvoiceModel, actions: list, events: list[Event], now: int, condition=None) -> bool:
    """Apply `actions` to the invoice and create the notifications for `events`, all or nothing.

    `invoice` holds the state the notifications describe; it must be the version read
    from the table, since the write is conditioned on it (and on `condition`, when given).
    False when another writer changed the invoice first: the caller reads it again and decides anew.
    """
    notifications = _outbox(invoice, events, now)
    try:
        if notifications:
            with transaction() as writes:
                writes.update(
                    invoice, [*actions, InvoiceModel.notification_count.add(len(notifications))], condition=condition
                )
                for notification in notifications:
                    writes.save(notification, condition=NotificationModel.sequence.does_not_exist())
        else:
            invoice.update(actions, condition=condition)
    except (UpdateError, TransactWriteError) as exc:
        if condition_failed(exc):
            return False
        raise
    if notifications:
        _queue_after_commit(invoice.invoice_id, now)
    return True


def save_created(invoice: InvoiceModel) -> None:
    """Save a new invoice with its invoice_created notifications, all or nothing.

    Raises PutError or TransactWriteError (a failed condition) when the id is taken.
    """
    notifications = _outbox(invoice, [Event(*CREATED, invoice.status)], invoice.created)
    if not notifications:
        invoice.save(condition=InvoiceModel.invoice_id.does_not_exist())
        return
    invoice.notification_count = len(notifications)
    with transaction() as writes:
        writes.save(invoice, condition=InvoiceModel.invoice_id.does_not_exist())
        for notification in notifications:
            writes.save(notification, condition=NotificationModel.sequence.does_not_exist())
    _queue_after_commit(invoice.invoice_id, invoice.created)


CREATION_CONFLICTS = (PutError, TransactWriteError)


def create_invoice(caller: Caller, fields: dict, base_url: str) -> InvoiceModel:
    """A new invoice as the API and the pages make one: saved with its invoice_created notifications."""
    return invoices.create(caller, fields, base_url=base_url, save=save_created, conflicts=CREATION_CONFLICTS)


def resend(invoice: InvoiceModel, now: int | None = None) -> None:
    """The merchant asks for the invoice's current state to be notified again (BitPay's manual IPN)."""
    if not invoice.notification_url:
        raise BadRequest("This invoice has no notificationURL to notify")
    for _ in range(3):
        moment = now if now is not None else now_ms()
        event = Event(*MANUALLY_NOTIFIED, invoices.current_status(invoice, moment))
        if commit(invoice, [], [event], moment):
            return
        invoice = InvoiceModel.get(invoice.invoice_id, consistent_read=True)
    raise ServiceUnavailable("The invoice is being updated; try again in a moment")


# The queue


@lru_cache(maxsize=1)
def sqs():
    import boto3  # Only the jobs and the resend route need it; API start-up does not.

    # boto3 itself reads AWS_ENDPOINT_URL_SQS, which points the local stack at moto.
    return boto3.client("sqs", region_name=get_settings().region)


@lru_cache(maxsize=1)
def _queue_url() -> str:
    settings = get_settings()
    return settings.notifications_queue_url or sqs().get_queue_url(QueueName=settings.notifications_queue)["QueueUrl"]


def enqueue(invoice_id: str, due: int, now: int) -> None:
    """Ask the consumer to deliver the invoice's pending notifications at `due` (ms)."""
    delay = min(max(math.ceil((due - now) / 1000), 0), get_settings().notification_max_delay_seconds)
    sqs().send_message(
        QueueUrl=_queue_url(), MessageBody=json.dumps({"invoiceId": invoice_id, "due": due}), DelaySeconds=delay
    )


def handle_message(text: str, now: int | None = None) -> None:
    """The SQS consumer's work for one message."""
    try:
        message = json.loads(text)
        invoice_id, due = str(message["invoiceId"]), int(message.get("due", 0))
    except (ValueError, TypeError, KeyError):
        logger.error("dropping a malformed notification message: %.200s", text)
        return
    now = now if now is not None else now_ms()
    if due > now:
        # Back-offs longer than SQS's longest delay take several hops.
        enqueue(invoice_id, due, now)
        return
    next_due = deliver_pending(invoice_id, now)
    if next_due is not None:
        enqueue(invoice_id, next_due, now)


def requeue_overdue(now: int) -> list[str]:
    """Re-queue the invoices whose pending notifications are long overdue (their message was lost).

    Each one's next attempt moves to `now`, so one stuck for another reason (a consumer
    that keeps failing) comes back once per OVERDUE_MS, not on every watcher run.
    """
    overdue = NotificationModel.by_outbox.query(_OUTBOX, NotificationModel.next_attempt < now - OVERDUE_MS)
    invoice_ids: list[str] = []
    for notification in overdue:
        if notification.invoice_id not in invoice_ids and len(invoice_ids) == MAX_SWEEP:
            break
        try:
            notification.update(
                [NotificationModel.next_attempt.set(now)],
                condition=NotificationModel.next_attempt == notification.next_attempt,
            )
        except UpdateError as exc:
            if condition_failed(exc):
                continue  # a consumer moved it meanwhile: it is not lost
            raise
        if notification.invoice_id not in invoice_ids:
            invoice_ids.append(notification.invoice_id)
    for invoice_id in invoice_ids:
        enqueue(invoice_id, now, now)
    return invoice_ids


# Delivery


def deliver_pending(invoice_id: str, now: int) -> int | None:
    """Attempt the invoice's due notifications; when to come back, or None when none is left.

    First deliveries go out in order: one never tried waits for those before it. A retry
    waits only for its own time, so a notification the shop keeps refusing holds none back.
    """
    pending = NotificationModel.query(
        invoice_id, filter_condition=NotificationModel.state == NotificationModel.PENDING, consistent_read=True
    )
    come_back: list[int] = []
    for notification in pending:
        first = not notification.attempts
        lease = now + LEASE_MS
        if notification.next_attempt > now:
            come_back.append(notification.next_attempt)
        elif not _claim(notification, now, lease):
            # Another consumer is delivering it; look again once its lease would have ended.
            come_back.append(lease)
        else:
            retry_at = _attempt(notification, now, lease)
            if retry_at is not None:
                come_back.append(retry_at)
            continue
        if first:
            break
    return min(come_back, default=None)


def _claim(notification: NotificationModel, now: int, lease: int) -> bool:
    free = NotificationModel.lease_until.does_not_exist() | (NotificationModel.lease_until < now)
    try:
        notification.update(
            [NotificationModel.lease_until.set(lease)],
            condition=(NotificationModel.state == NotificationModel.PENDING) & free,
        )
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _send(notification: NotificationModel) -> tuple[int | None, str | None]:
    if notification.url.startswith(MAILTO):
        email = json.loads(notification.body)
        return None, mail.send(notification.url[len(MAILTO) :].split(","), email["subject"], email["text"])
    settings = get_settings()
    body = notification.body.encode()
    return post_json(
        notification.url,
        body,
        timeout=settings.notification_timeout_seconds,
        allow_private=settings.allow_private_notification_urls,
        headers={SIGNATURE_HEADER: sign(signing_secret(notification.store_id), body)},
    )


def _attempt(notification: NotificationModel, now: int, lease: int) -> int | None:
    """One delivery attempt, recorded; when to try again, None when it is done with (delivered or given up)."""
    started = time.monotonic()
    status, error = _send(notification)
    attempt = AttemptAttribute(
        time=now, status=status, error=error, duration_ms=int((time.monotonic() - started) * 1000)
    )
    # A pending notification's earlier attempts all failed: a success would have ended it.
    failures = len(notification.attempts) + 1
    actions = [
        NotificationModel.attempts.set(NotificationModel.attempts.append([attempt])),
        NotificationModel.lease_until.remove(),
    ]
    retry_at = None
    if error and failures <= len(RETRY_DELAYS_MINUTES):
        retry_at = now + RETRY_DELAYS_MINUTES[failures - 1] * 60_000
        actions.append(NotificationModel.next_attempt.set(retry_at))
    else:
        state = NotificationModel.FAILED if error else NotificationModel.DELIVERED
        actions += [
            NotificationModel.state.set(state),
            NotificationModel.outbox.remove(),
            NotificationModel.next_attempt.remove(),
        ]
    try:
        notification.update(actions, condition=NotificationModel.lease_until == lease)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        # Our lease ran out and another consumer took over; its record stands.
        logger.warning("lease on notification %s/%s lost", notification.invoice_id, notification.sequence)
        return None
    return retry_at


# Signatures


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def signing_secret(store_id: str) -> str:
    """The store's notification secret, made on first use.

    One conditional UpdateItem (if_not_exists) rather than a read and a write: two first
    uses at once agree on one secret. Read at each post, so a rotation applies at once.
    """
    store = StoreModel(store_id)
    store.update(
        [StoreModel.notification_secret.set(StoreModel.notification_secret | _new_secret())],
        condition=StoreModel.store_id.exists(),
    )
    return store.notification_secret


def rotate_signing_secret(store_id: str) -> None:
    StoreModel(store_id).update(
        [StoreModel.notification_secret.set(_new_secret())], condition=StoreModel.store_id.exists()
    )


def post_json(
    url: str, payload: bytes, *, timeout: float, allow_private: bool, headers: dict[str, str] | None = None
) -> tuple[int | None, str | None]:
    """POST `payload` to `url`: (HTTP status, None) on a 2xx answer, else (status or None, what went wrong).

    Redirects are not followed: a redirect could lead to an address the guard refused.
    """
    parts = urlsplit(url)
    host, scheme = parts.hostname, parts.scheme
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None, "invalid port in notificationURL"
    if scheme not in ("http", "https") or not host:
        return None, "notificationURL is not an http(s) URL"
    try:
        address = _resolve(host, port, allow_private)
    except OSError as exc:
        return None, f"cannot resolve {host}: {exc.strerror or exc}"
    except ValueError as exc:
        return None, str(exc)
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=payload,
            headers={"Content-Type": "application/json", "User-Agent": "paylambda-ipn", **(headers or {})},
        )
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return response.status, None
    return response.status, f"HTTP {response.status}"


def _resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to; ValueError when any address of the host is not public and that is not allowed.

    The connection then goes to exactly this address, so a DNS answer that changes
    between the check and the connection (rebinding) cannot slip past the guard.
    """
    addresses = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    if not allow_private:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            if not address.is_global or address.is_multicast:
                raise ValueError(f"refused: {host} resolves to {text}, a loopback, private or link-local address")
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        import ssl

        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is checked against the host name, not the pinned address.
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


# What the merchant sees


def history(invoice_id: str) -> list[dict]:
    """The invoice's notifications, oldest first, with every delivery attempt (for the invoice's page)."""
    return [
        {
            "sequence": notification.sequence,
            "event": {"code": notification.event_code, "name": notification.event_name},
            "url": notification.url,
            # An email's recipients, subject and text, as sent.
            "email": (
                {"to": notification.url[len(MAILTO) :].split(","), **json.loads(notification.body)}
                if notification.url.startswith(MAILTO)
                else None
            ),
            "state": notification.state,
            "created": notification.created,
            "nextAttempt": notification.next_attempt,
            "attempts": [
                {"time": a.time, "status": a.status, "error": a.error, "durationMs": a.duration_ms}
                for a in notification.attempts
            ],
        }
        for notification in NotificationModel.query(invoice_id)
    ]
