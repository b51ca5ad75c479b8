"""A store's invoices as CSV, safe to open in a spreadsheet."""

import csv
import io
from datetime import UTC, datetime

from chalicelib.billing.invoices import current_status, format_btc
from chalicelib.models import InvoiceModel

COLUMNS = (
    "invoiceId", "created", "status", "exceptionStatus", "price", "currency", "btcDue", "btcPaid",
    "orderId", "itemDesc", "address", "buyerEmail",
)  # fmt: skip
# A spreadsheet runs a cell starting with these as a formula (CSV injection): such a cell gets a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _row(invoice: InvoiceModel, now: int) -> tuple:
    created = datetime.fromtimestamp(invoice.created / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        invoice.invoice_id, created, current_status(invoice, now), invoice.exception_status or "",
        invoice.price, invoice.currency, format_btc(invoice.btc_due_sats), format_btc(invoice.btc_paid_sats),
        invoice.order_id, invoice.item_desc, invoice.address, invoice.buyer.email,
    )  # fmt: skip


def to_csv(invoices: list[InvoiceModel], now: int) -> str:
    """Every cell quoted, and every one a spreadsheet would run neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for invoice in invoices:
        writer.writerow([safe_cell(value) for value in _row(invoice, now)])
    return out.getvalue()
