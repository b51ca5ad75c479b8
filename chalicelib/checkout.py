"""The buyer's checkout: what to pay, where and by when, and how the invoice stands.

Everything that changes as an invoice is paid or expires is in one region,
rendered by `status_region` from the invoice's public view alone, so a page
polling the invoice's status can replace that region without a reload.
"""

from . import invoices, stores
from .errors import NotFound
from .rendering import render_fragment

# What the buyer is told, by invoice status (exceptionStatus refines "new").
PAYABLE_STATES = ("awaiting", "partial")
_STATES = {"paid": "paid", "confirmed": "complete", "complete": "complete", "expired": "expired", "invalid": "invalid"}


def find(invoice_id: str, base_url: str) -> tuple[dict, str]:
    """The invoice's public view and the name of the store it pays, which the buyer should recognise."""
    try:
        invoice = invoices.get_public(invoice_id)
    except NotFound:
        raise NotFound("There is no invoice with this id. Check the link you were given.") from None
    store = stores.get_store(invoice.store_id)
    return invoices.public_view(invoice, base_url), store.name if store else ""


def state(view: dict) -> str:
    """awaiting, partial, paid, complete, expired or invalid."""
    if view["status"] == "new":
        return "partial" if view.get("exceptionStatus") == "paidPartial" else "awaiting"
    return _STATES.get(view["status"], "invalid")


def seconds_left(view: dict) -> int:
    return max(0, (view["expirationTime"] - view["currentTime"]) // 1000)


def format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def qr_svg(uri: str) -> str:
    """The payment URI as an SVG QR code, drawn on the server (no script, no third party)."""
    import segno  # loaded with the first checkout page, not at start-up

    code = segno.make(uri, error="m")
    return code.svg_inline(
        scale=1, border=4, omitsize=True, light="#fff", svgclass="qr", title="QR code of the payment"
    )


def status_region(view: dict) -> str:
    """The checkout page's status region (HTML) for an invoice's public view."""
    current = state(view)
    uri = view["paymentCodes"]["BTC"]["BIP21"]
    return render_fragment(
        "checkout_status.html",
        invoice=view,
        state=current,
        time_left=format_duration(seconds_left(view)),
        payment_uri=uri,
        qr_svg=qr_svg(uri) if current in PAYABLE_STATES else "",
    )
