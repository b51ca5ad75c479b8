"""Instant payment notifications (IPN): what BitPay posts to an invoice's notificationURL, delivered reliably.

Which changes notify follows BitPay: `confirmed` always, every status change with
fullNotifications, the `{event, data}` form (and the receivedPayment event) with
extendedNotifications, which implies full notifications.

Delivery is at least once, in order per invoice. A notification is written in the
same DynamoDB transaction as the invoice change that caused it (an outbox), then an
SQS message names the invoice; the consumer posts that invoice's pending
notifications in sequence, stops at the first failure and asks SQS to come back
when its back-off ends. Every attempt is recorded. A sweep re-queues any invoice
whose message was lost, so a crash between the transaction and SQS loses nothing.
"""

import http.client
import ipaddress
import json
import logging
import math
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from pynamodb.exceptions import TransactWriteError, UpdateError

from . import invoices
from .errors import BadRequest, ServiceUnavailable
from .models import AttemptAttribute, InvoiceModel, NotificationModel, condition_failed, now_ms, transaction
from .settings import get_settings

logger = logging.getLogger(__name__)

# Minutes to wait after each failed attempt, BitPay's 1, 4, 9, 16, 25 and then longer:
# eleven attempts over about a day, then the notification is given up.
RETRY_DELAYS_MINUTES = (1, 4, 9, 16, 25, 60, 120, 240, 480, 480)
LEASE_MS = 2 * 60_000
# A pending notification this late has lost its queue message; the sweep sends another.
OVERDUE_MS = 15 * 60_000
MAX_SWEEP = 100
MAX_RESPONSE_BYTES = 64 * 1024
_OUTBOX = "pending"


@dataclass(frozen=True)
class Event:
    code: int
    name: str
    # The invoice status the notification reports.
    status: str


_STATUS_EVENTS = {
    "paid": (1003, "invoice_paidInFull"),
    "expired": (1004, "invoice_expired"),
    "confirmed": (1005, "invoice_confirmed"),
    "complete": (1006, "invoice_completed"),
    "invalid": (1013, "invoice_failedToConfirm"),
}
RECEIVED_PAYMENT = (1002, "invoice_receivedPayment")
MANUALLY_NOTIFIED = (1012, "invoice_manuallyNotified")

# BitPay's IPN body: the invoice fields a receiver needs, before it re-fetches the invoice.
_NOTIFICATION_FIELDS = (
    "id", "url", "posData", "status", "price", "currency", "invoiceTime", "expirationTime", "currentTime",
    "exceptionStatus", "paymentSubtotals", "paymentTotals", "exchangeRates", "amountPaid", "orderId",
    "btcPrice", "btcPaid", "rate",
)  # fmt: skip
_BUYER_FIELDS = {
    "name": "buyerName", "address1": "buyerAddress1", "address2": "buyerAddress2", "locality": "buyerCity",
    "region": "buyerState", "postalCode": "buyerZip", "country": "buyerCountry", "email": "buyerEmail",
    "phone": "buyerPhone", "notify": "buyerNotify",
}  # fmt: skip


def events_for(invoice: InvoiceModel, transitions: tuple[str, ...], received_payment: bool) -> list[Event]:
    """The notifications BitPay would send for these status changes of the invoice."""
    if not invoice.notification_url:
        return []
    full = invoice.full_notifications or invoice.extended_notifications
    events = [Event(*_STATUS_EVENTS[status], status) for status in transitions if status == "confirmed" or full]
    if received_payment and not transitions and invoice.extended_notifications:
        events.append(Event(*RECEIVED_PAYMENT, invoice.status))
    return events


def notification_view(invoice: InvoiceModel, status: str, now: int) -> dict:
    view = invoices.full_view(invoice, invoice.base_url or get_settings().public_base_url or "")
    body = {key: view[key] for key in _NOTIFICATION_FIELDS if key in view}
    body["status"] = status
    body["currentTime"] = now
    buyer = view.get("buyer", {})
    body["buyerFields"] = {_BUYER_FIELDS[name]: value for name, value in buyer.items() if name in _BUYER_FIELDS}
    if invoice.btc_paid_sats:
        body["transactionCurrency"] = "BTC"
    return body


def _body(invoice: InvoiceModel, event: Event, now: int) -> str:
    view = notification_view(invoice, event.status, now)
    if invoice.extended_notifications:
        return json.dumps({"event": {"code": event.code, "name": event.name}, "data": view})
    return json.dumps(view)


def commit(invoice: InvoiceModel, actions: list, events: list[Event], now: int, condition=None) -> bool:
    """Apply `actions` to the invoice and create the notifications for `events`, all or nothing.

    `invoice` holds the state the notifications describe; it must be the version read
    from the table, since the write is conditioned on it (and on `condition`, when given).
    False when another writer changed the invoice first: the caller reads it again and decides anew.
    """
    notifications = [
        NotificationModel(
            invoice.invoice_id,
            invoice.notification_count + number,
            store_id=invoice.store_id,
            event_code=event.code,
            event_name=event.name,
            url=invoice.notification_url,
            body=_body(invoice, event, now),
            created=now,
            outbox=_OUTBOX,
            next_attempt=now,
        )
        for number, event in enumerate(events, start=1)
    ]
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
        try:
            enqueue(invoice.invoice_id, due=now, now=now)
        except Exception:
            logger.exception("could not queue notifications of %s; the sweep will", invoice.invoice_id)
    return True


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
    """Post the invoice's pending notifications in order; when to come back, or None when none is left."""
    pending = NotificationModel.query(
        invoice_id, filter_condition=NotificationModel.state == NotificationModel.PENDING, consistent_read=True
    )
    for notification in pending:
        if notification.next_attempt > now:
            return notification.next_attempt
        lease = now + LEASE_MS
        if not _claim(notification, now, lease):
            # Another consumer is delivering it; look again once its lease would have ended.
            return lease
        if not _attempt(notification, now, lease):
            return notification.next_attempt
    return None


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


def _attempt(notification: NotificationModel, now: int, lease: int) -> bool:
    """One delivery attempt, recorded; True when the notification is done with (delivered or given up)."""
    settings = get_settings()
    started = time.monotonic()
    status, error = post_json(
        notification.url,
        notification.body.encode(),
        timeout=settings.notification_timeout_seconds,
        allow_private=settings.allow_private_notification_urls,
    )
    attempt = AttemptAttribute(
        time=now, status=status, error=error, duration_ms=int((time.monotonic() - started) * 1000)
    )
    # A pending notification's earlier attempts all failed: a success would have ended it.
    failures = len(notification.attempts) + 1
    actions = [
        NotificationModel.attempts.set(NotificationModel.attempts.append([attempt])),
        NotificationModel.lease_until.remove(),
    ]
    if error and failures <= len(RETRY_DELAYS_MINUTES):
        next_attempt = now + RETRY_DELAYS_MINUTES[failures - 1] * 60_000
        actions.append(NotificationModel.next_attempt.set(next_attempt))
        done = False
    else:
        state = NotificationModel.FAILED if error else NotificationModel.DELIVERED
        actions += [
            NotificationModel.state.set(state),
            NotificationModel.outbox.remove(),
            NotificationModel.next_attempt.remove(),
        ]
        done = True
    try:
        notification.update(actions, condition=NotificationModel.lease_until == lease)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        # Our lease ran out and another consumer took over; its record stands.
        logger.warning("lease on notification %s/%s lost", notification.invoice_id, notification.sequence)
    return done


def post_json(url: str, payload: bytes, *, timeout: float, allow_private: bool) -> tuple[int | None, str | None]:
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
            "POST", path, body=payload, headers={"Content-Type": "application/json", "User-Agent": "paylambda-ipn"}
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
