"""The buyer's checkout: what to pay, where and by when, and how the invoice stands.

Everything that changes as an invoice is paid or expires is in one region,
rendered by `status_region` from the invoice's public view alone. The page
polls `poll` (through `GET /invoice/status`), which answers with that same
region rendered anew, so the page replaces it without a reload and the
browser's script knows nothing about states or wording.
"""

import functools

from chalicelib.billing import invoices, stores
from chalicelib.errors import NotFound
from chalicelib.models import InvoiceModel, StoreModel
from chalicelib.pages.language import DEFAULT_LANGUAGE, template_context
from chalicelib.pages.rendering import render_fragment
from chalicelib.payments import watcher

# What the buyer is told, by invoice status (exceptionStatus refines "new").
PAYABLE_STATES = ("awaiting", "partial")
_SHOWN_AS_THEY_ARE = ("paid", "confirmed", "complete", "expired", "invalid")
# Seconds before an open checkout asks again. The region changes only when the watcher writes, so it
# follows the watcher's schedule: an open invoice is looked at once a run (a minute), and asked for
# once a run (asking more often would mostly read an unchanged item, each time an API request);
# sooner once part of a payment is seen, since the rest usually follows in moments.
WAITING_POLL_SECONDS = watcher.RUN_INTERVAL_MS // 1000
PARTLY_PAID_POLL_SECONDS = 20
# A checkout that expired keeps asking this long: a payment sent in its last moments is seen
# by the watcher after the expiry (at the final check a minute later, or on its late-check back-off).
EXPIRED_POLL_MS = 15 * 60_000
STATUS_FIELDS = ("status", "exceptionStatus", "btcDue", "btcPaid")


# The buyer is done here (paid, or too late): the checkout offers the way back to the shop.
RETURN_STATES = ("paid", "confirmed", "complete", "expired")


def find(invoice_id: str, base_url: str) -> tuple[dict, StoreModel | None]:
    """The invoice's public view and the store it pays, whose name the buyer should recognise."""
    try:
        invoice = invoices.get_public(invoice_id)
    except NotFound:
        raise NotFound("There is no invoice with this id. Check the link you were given.") from None
    return invoices.public_view(invoice, base_url), stores.get_store(invoice.store_id)


def return_link(view: dict, store: StoreModel | None) -> dict | None:
    """ "Return to {store}" once the buyer is done: the invoice's redirectURL, else the store's website."""
    url = view.get("redirectURL") or (store.website if store else None)
    if state(view) not in RETURN_STATES or not url:
        return None
    return {"url": url, "name": store.name if store else "the shop"}


def state(view: dict) -> str:
    """awaiting, partial, paid, confirmed, complete, expired or invalid."""
    if view["status"] == "new":
        return "partial" if view.get("exceptionStatus") == "paidPartial" else "awaiting"
    return view["status"] if view["status"] in _SHOWN_AS_THEY_ARE else "invalid"


def poll_seconds(view: dict) -> int | None:
    """When the page should ask again; None once nothing the buyer would see can change."""
    current = state(view)
    past_expiry = view["currentTime"] - view["expirationTime"]
    if current == "awaiting":
        return WAITING_POLL_SECONDS
    if current == "partial":
        return PARTLY_PAID_POLL_SECONDS
    if current == "expired" and (view.get("exceptionStatus") == "paidLate" or past_expiry > EXPIRED_POLL_MS):
        return None
    if current not in ("paid", "expired"):
        return None
    if past_expiry < watcher.RUN_INTERVAL_MS:
        # Still checked on every run (the final check at the expiry decides paid or expired).
        return WAITING_POLL_SECONDS
    # Then on the watcher's late checks: waiting for a block, or for a payment sent too late.
    return watcher.late_interval(past_expiry, view["status"]) // 1000


def seconds_left(view: dict) -> int:
    return max(0, (view["expirationTime"] - view["currentTime"]) // 1000)


def format_duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


# An open checkout polls its region every few seconds and the payment URI seldom changes: drawing the
# code is most of a region's cost. About 3.5 KB each.
@functools.lru_cache(maxsize=128)
def qr_svg(uri: str) -> str:
    """The payment URI as an SVG QR code, drawn on the server (no script, no third party)."""
    import segno  # loaded with the first checkout page, not at start-up

    code = segno.make(uri, error="m")
    return code.svg_inline(
        scale=1, border=4, omitsize=True, light="#fff", svgclass="qr", title="QR code of the payment"
    )


def status_region(view: dict, store: StoreModel | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The checkout page's status region (HTML) for an invoice's public view, in `language`."""
    current = state(view)
    uri = view["paymentCodes"]["BTC"]["BIP21"]
    seconds = poll_seconds(view)
    return render_fragment(
        "checkout_status.html",
        invoice=view,
        state=current,
        # What the buyer sees, without the ticking clock: the page swaps the region only when it changes.
        key=":".join(str(part) for part in (current, view["exceptionStatus"], view["btcDue"], view["btcPaid"])),
        poll_seconds=seconds,
        time_left=format_duration(seconds_left(view)),
        payment_uri=uri,
        qr_svg=qr_svg(uri) if current in PAYABLE_STATES else "",
        return_to=return_link(view, store),
        **template_context(language),
    )


def poll(invoice: InvoiceModel, base_url: str, language: str = DEFAULT_LANGUAGE) -> dict:
    """What the checkout page polls: the invoice's status fields, and its status region rendered anew."""
    view = invoices.public_view(invoice, base_url)
    # The store is read only once the region links back to it: an open checkout's polls cost one read.
    store = stores.get_store(invoice.store_id) if state(view) in RETURN_STATES else None
    region = status_region(view, store, language)
    return {**{field: view[field] for field in STATUS_FIELDS}, "statusRegion": region}
