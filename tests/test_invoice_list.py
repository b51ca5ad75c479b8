"""The store's Invoices page: search, filters, total and CSV export, through the pages."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.pages_support import text_of, update_invoice
from tests.test_pages import merchant, paired_client  # noqa: F401 (a fixture)

FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def listed(api_url, merchant, store):  # noqa: F811
    """Three invoices: two of order A (one paid over), one of a formula-like order."""
    client = paired_client(api_url, merchant, store.store_id)
    token = client.tokens["merchant"]
    made = [
        client.create_invoice({"price": 10, "currency": "USD", "orderId": order, "token": token, "itemDesc": desc})
        for order, desc in [("order-a", "first"), ("order-a", "second"), (FORMULA, "@SUM(A1)")]
    ]
    update_invoice(made[1]["id"], status="paid", store_status=f"{store.store_id}#paid", exception_status="paidOver")
    return [invoice["id"] for invoice in made]


def _page(api_url, merchant, store, **query):  # noqa: F811
    return merchant.get(f"{api_url}/stores/{store.store_id}/invoices", params=query)


def test_search_filters_and_the_total(api_url, merchant, store, listed):  # noqa: F811
    first, second, third = listed
    everything = _page(api_url, merchant, store)
    assert "3 invoices" in text_of(everything) and all(i in everything.text for i in listed)

    by_order = _page(api_url, merchant, store, q="order-a")
    assert "2 invoices" in text_of(by_order)
    assert first in by_order.text and second in by_order.text and third not in by_order.text

    by_id = _page(api_url, merchant, store, q=third)
    assert "1 invoice" in text_of(by_id) and third in by_id.text and first not in by_id.text

    paid = _page(api_url, merchant, store, status="paid")
    assert "1 invoice" in text_of(paid) and second in paid.text and first not in paid.text
    assert 'value="paid" selected' in paid.text

    over = _page(api_url, merchant, store, q="order-a", exceptionStatus="paidOver")
    assert second in over.text and first not in over.text
    plain = _page(api_url, merchant, store, exceptionStatus="none")
    assert "2 invoices" in text_of(plain) and second not in plain.text

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    later = _page(api_url, merchant, store, dateStart=tomorrow)
    assert "No invoice matches." in text_of(later) and first not in later.text
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert "3 invoices" in text_of(_page(api_url, merchant, store, dateStart=today, dateEnd=tomorrow))


def test_another_stores_invoice_is_not_found_by_its_id(api_url, merchant, store, other_store, listed):  # noqa: F811
    other = merchant.get(f"{api_url}/stores/{store.store_id}/invoices", params={"q": listed[0]})
    assert listed[0] in other.text
    # The same id searched in a store that is not its own finds nothing (it is an order id there).
    update_invoice(listed[0], store_id=other_store.store_id)
    assert "No invoice matches." in text_of(_page(api_url, merchant, store, q=listed[0]))


@pytest.mark.parametrize(
    "query, message",
    [
        ({"dateStart": "2025-02-01", "dateEnd": "2025-01-01"}, "dateEnd must not be before dateStart"),
        ({"exceptionStatus": "paidTwice"}, "exceptionStatus must be one of"),
        ({"dateStart": "yesterday"}, "dateStart"),
    ],
)
def test_bad_filters_are_shown_on_the_page(api_url, merchant, store, query, message):  # noqa: F811
    page = _page(api_url, merchant, store, **query)
    assert page.status_code == 400 and message in text_of(page)
    assert 'name="q"' in page.text


def test_export_is_the_filtered_list_as_safe_csv(api_url, merchant, store, listed):  # noqa: F811
    first, second, third = listed
    page = _page(api_url, merchant, store, q="order-a")
    assert f"/stores/{store.store_id}/invoices/export?q=order-a" in page.text

    export = merchant.get(f"{api_url}/stores/{store.store_id}/invoices/export", params={"q": "order-a"})
    assert export.status_code == 200
    assert export.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert export.headers["Content-Disposition"] == 'attachment; filename="invoices.csv"'
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [row["invoiceId"] for row in rows] == [second, first]
    assert (rows[0]["status"], rows[0]["exceptionStatus"], rows[0]["price"]) == ("paid", "paidOver", "10")
    assert rows[1]["orderId"] == "order-a" and rows[1]["itemDesc"] == "first"

    everything = merchant.get(f"{api_url}/stores/{store.store_id}/invoices/export")
    [formula] = [row for row in csv.DictReader(io.StringIO(everything.text)) if row["invoiceId"] == third]
    # A spreadsheet shows these as text instead of running them.
    assert formula["orderId"] == "'" + FORMULA and formula["itemDesc"] == "'@SUM(A1)"
    assert everything.text.startswith('"invoiceId","created"')


def test_export_is_for_the_stores_merchant_only(api_url, merchant, other_store):  # noqa: F811
    assert merchant.get(f"{api_url}/stores/{other_store.store_id}/invoices/export").status_code == 404
