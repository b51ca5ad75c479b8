"""A merchant cancels an invoice nobody has paid (BitPay's DELETE /invoices/{id}).

It becomes `expired` with `isCancelled`, is no longer watched, and notifies as an expiry
does. The write is conditioned on the invoice still being new, unpaid and the version
read, so a cancellation racing the watcher that credits a payment loses: money that
arrived is never hidden behind a cancellation.
"""

from chalicelib.billing.invoices import current_status, format_btc
from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel, now_ms

MAX_CONFLICTS = 3


def _refusal(invoice: InvoiceModel, now: int) -> str | None:
    """Why the invoice cannot be cancelled, None when it can."""
    if invoice.btc_paid_sats or invoice.payments:
        return (
            f"This invoice cannot be cancelled: it has received {format_btc(invoice.btc_paid_sats)} BTC in "
            f"{len(invoice.payments)} payment(s)"
        )
    if invoice.status != "new":
        return f"Only a new invoice can be cancelled; this one is {current_status(invoice, now)}"
    return None


def cancel(invoice: InvoiceModel) -> InvoiceModel:
    """The invoice, cancelled (already cancelled: as it is); BadRequest naming why it cannot be."""
    for _ in range(MAX_CONFLICTS):
        if invoice.cancelled:
            return invoice
        now = now_ms()
        refusal = _refusal(invoice, now)
        if refusal:
            raise BadRequest(refusal)
        # The notification describes the invoice as it is about to be written.
        invoice.status, invoice.cancelled = "expired", True
        invoice.store_status = f"{invoice.store_id}#expired"
        actions = [
            InvoiceModel.status.set("expired"),
            InvoiceModel.store_status.set(invoice.store_status),
            InvoiceModel.cancelled.set(True),
            InvoiceModel.watch_network.remove(),
            InvoiceModel.next_check.remove(),
        ]
        unpaid = (InvoiceModel.status == "new") & (InvoiceModel.btc_paid_sats == 0)
        events = notifications.events_for(invoice, ("expired",), received_payment=False)
        if notifications.commit(invoice, actions, events, now, condition=unpaid):
            return invoice
        invoice = InvoiceModel.get(invoice.invoice_id, consistent_read=True)
    raise ServiceUnavailable("The invoice is being updated; try again in a moment")
