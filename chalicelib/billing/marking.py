"""A merchant's hand on an invoice: mark it complete or invalid from its page, as BTCPay lets them.

For what the watcher cannot know: a payment settled some other way, an order refused.
The status becomes final (the invoice is no longer watched), exceptionStatus becomes
`marked`, and the invoice_markedComplete / invoice_markedInvalid notification is written
in the same transaction, conditioned on the version read, so a watcher run that changes
the invoice meanwhile makes this one read it again and decide anew, never overwrite it.
"""

from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel, now_ms

MARKED = "marked"
MAX_REASON = 500
_EVENTS = {"complete": notifications.MARKED_COMPLETE, "invalid": notifications.MARKED_INVALID}
# BTCPay's legacy rules (InvoiceState.CanMarkComplete / CanMarkInvalid).
_MARKABLE_FROM = {"complete": ("new", "paid", "expired", "invalid"), "invalid": ("new", "paid", "expired")}


def can_mark(invoice: InvoiceModel, status: str) -> bool:
    if invoice.exception_status == MARKED:
        return invoice.status != status
    return invoice.status in _MARKABLE_FROM[status]


def mark(invoice: InvoiceModel, status: str, reason: str | None = None, now: int | None = None) -> InvoiceModel:
    """Mark the invoice `status` ("complete" or "invalid"); an invalid one needs a reason."""
    if status not in _EVENTS:
        raise BadRequest("An invoice can be marked complete or invalid only")
    reason = (reason or "").strip() or None
    if status == "invalid" and reason is None:
        raise BadRequest("Say why the invoice is invalid")
    if reason is not None and len(reason) > MAX_REASON:
        raise BadRequest(f"The reason is longer than {MAX_REASON} characters")
    for _ in range(3):
        if not can_mark(invoice, status):
            raise BadRequest(f"An invoice that is {invoice.status} cannot be marked {status}")
        moment = now if now is not None else now_ms()
        # The notification describes the invoice as it is about to be written.
        invoice.status, invoice.store_status = status, f"{invoice.store_id}#{status}"
        invoice.exception_status, invoice.mark_reason = MARKED, reason
        actions = [
            InvoiceModel.status.set(invoice.status),
            InvoiceModel.store_status.set(invoice.store_status),
            InvoiceModel.exception_status.set(MARKED),
            InvoiceModel.mark_reason.set(reason) if reason else InvoiceModel.mark_reason.remove(),
            InvoiceModel.watch_network.remove(),
            InvoiceModel.next_check.remove(),
        ]
        event = notifications.Event(*_EVENTS[status], status)
        if notifications.commit(invoice, actions, [event], moment):
            return invoice
        invoice = InvoiceModel.get(invoice.invoice_id, consistent_read=True)
    raise ServiceUnavailable("The invoice is being updated; try again in a moment")
