"""The local test chain's controls, as BTCPay's checkout has them on regtest: pay, pay part, mine a block, expire now.

They exist only when the service runs on regtest against the chain `make run` serves
(`Settings.test_chain_controls`; app.py registers their route then, and a deployed stack
never has it). A control changes the chain, or moves the invoice's expiry to now, and then
checks the invoice at once through the watcher: the status comes from the same rules as
any payment's and any expiry's, and the open checkout shows it at its next poll.
"""

import json
import urllib.request

from pynamodb.exceptions import UpdateError

from chalicelib.billing.invoices import format_btc
from chalicelib.errors import BadRequest, ServiceUnavailable
from chalicelib.models import InvoiceModel, condition_failed, now_ms
from chalicelib.payments import watcher
from chalicelib.settings import get_settings

ACTIONS = {
    "pay": "Pay the full amount",
    "pay-part": "Pay part",
    "mine": "Mine a block",
    "expire": "Expire now",
}
_CHAIN_TIMEOUT_SECONDS = 5


def run(invoice: InvoiceModel, action: str) -> None:
    """Do `action` (one of ACTIONS) for the invoice, then check it; BadRequest says why it cannot be done."""
    if not get_settings().test_chain_controls:
        raise BadRequest("The test chain's controls work only on make run's local regtest chain")
    if action in ("pay", "pay-part"):
        due = invoice.btc_due_sats - invoice.btc_paid_sats
        if due <= 0:
            raise BadRequest(f"Nothing is due: {format_btc(invoice.btc_paid_sats)} BTC was paid already")
        _control("pay", {"address": invoice.address, "amount": due if action == "pay" else max(1, due // 2)})
    elif action == "mine":
        _control("mine", {"blocks": 1})
    elif action == "expire":
        _expire_now(invoice)
    else:
        raise BadRequest(f"Unknown action: choose one of {', '.join(ACTIONS)}")
    report = watcher.check([invoice.invoice_id])
    if report.errors:
        raise ServiceUnavailable("Done, but the invoice could not be checked now: the watcher will on its next run")


def _control(name: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{get_settings().local_chain_url}/control/{name}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_CHAIN_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise ServiceUnavailable(f"The local test chain did not answer ({exc})") from None


def _expire_now(invoice: InvoiceModel) -> None:
    """Move the expiry of a new invoice to now; the check that follows decides `expired` (or paid in time)."""
    if invoice.status != "new":
        raise BadRequest(f"Only a new invoice can expire; this one is {invoice.status}")
    # A moment ago: the check that follows comes after it (an invoice expires once the clock is past it).
    expired_at = now_ms() - 1
    if invoice.expiration <= expired_at:
        return
    try:
        # Conditioned on the version read (pynamodb adds it) and on the status: a racing watcher wins.
        invoice.update([InvoiceModel.expiration.set(expired_at)], condition=InvoiceModel.status == "new")
    except UpdateError as exc:
        if condition_failed(exc):
            raise ServiceUnavailable("The invoice is being updated; try again in a moment") from None
        raise
