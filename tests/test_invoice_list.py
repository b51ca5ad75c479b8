"""The store's Invoices page: search, filters, total and CSV export, through the pages."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from chalicelib.billing import invoices, stores
from chalicelib.models import InvoiceModel
from tests.api_fixtures import root_only
from tests.pages_support import csrf_token, post_form, text_of, update_invoice
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
    assert "1 invoice" in text_of(over)
    unpaid_a = _page(api_url, merchant, store, q="order-a", status="new")
    assert "1 invoice" in text_of(unpaid_a) and first in unpaid_a.text and second not in unpaid_a.text
    plain = _page(api_url, merchant, store, exceptionStatus="none")
    assert "2 invoices" in text_of(plain) and second not in plain.text

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    later = _page(api_url, merchant, store, dateStart=tomorrow)
    assert "No invoice matches." in text_of(later) and first not in later.text
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert "3 invoices" in text_of(_page(api_url, merchant, store, dateStart=today, dateEnd=tomorrow))


def test_search_by_address_and_by_buyer_email(api_url, merchant, store, other_store, listed):  # noqa: F811
    client = paired_client(api_url, merchant, store.store_id)
    token = client.tokens["merchant"]
    bought = [
        client.create_invoice({"price": 5, "currency": "USD", "token": token, "buyer": {"email": email}})
        for email in ("Ana.Buyer@Example.com", "ana.buyer@example.com", "bob@example.com")
    ]
    by_address = _page(api_url, merchant, store, q=bought[2]["bitcoinAddress"])
    assert "1 invoice" in text_of(by_address) and bought[2]["id"] in by_address.text
    assert bought[0]["id"] not in by_address.text

    by_email = _page(api_url, merchant, store, q="ANA.buyer@example.com")
    assert "2 invoices" in text_of(by_email)
    assert bought[0]["id"] in by_email.text and bought[1]["id"] in by_email.text
    assert bought[2]["id"] not in by_email.text
    update_invoice(bought[1]["id"], status="paid", store_status=f"{store.store_id}#paid")
    paid = _page(api_url, merchant, store, q="ana.buyer@example.com", status="paid")
    assert "1 invoice" in text_of(paid) and bought[1]["id"] in paid.text
    export = merchant.get(f"{api_url}/stores/{store.store_id}/invoices/export", params={"q": "bob@example.com"})
    assert [row["invoiceId"] for row in csv.DictReader(io.StringIO(export.text))] == [bought[2]["id"]]

    # Another store's address and buyers are not found from this one.
    update_invoice(bought[2]["id"], store_id=other_store.store_id)
    assert "No invoice matches." in text_of(_page(api_url, merchant, store, q=bought[2]["bitcoinAddress"]))
    assert "No invoice matches." in text_of(_page(api_url, merchant, store, q="nobody@example.com"))


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


# Creating an invoice from the page


def _new_invoice(api_url, merchant, store, **fields):  # noqa: F811
    list_url = f"{api_url}/stores/{store.store_id}/invoices"
    return post_form(merchant, list_url, list_url, **fields)


def test_an_invoice_made_on_the_page_has_a_checkout_link_to_send(api_url, merchant, store):  # noqa: F811
    made = _new_invoice(
        api_url, merchant, store, price="1234.5", currency="EUR", orderId="phone-7", itemDesc="Repair", buyerEmail=""
    )
    assert made.status_code == 303
    invoice_path = urlsplit(made.headers["Location"]).path
    invoice_id = invoice_path.rsplit("/", 1)[1]
    assert invoice_path == f"{urlsplit(api_url).path}/stores/{store.store_id}/invoices/{invoice_id}"
    page = merchant.get(made.headers["Location"])
    checkout_url = f"{api_url}/invoice?id={invoice_id}"
    assert "Invoice created. Send the buyer its checkout page:" in text_of(page) and checkout_url in page.text
    assert "Repair" in text_of(merchant.get(checkout_url))

    stored = InvoiceModel.get(invoice_id)
    assert (stored.price, stored.currency, stored.order_id, stored.item_desc) == ("1234.5", "EUR", "phone-7", "Repair")
    assert (stored.store_id, stored.facade, stored.token) == (store.store_id, "merchant", "pages")
    # Reading the page again (a reload after the redirect) makes no second invoice.
    merchant.get(made.headers["Location"])
    assert "1 invoice" in text_of(_page(api_url, merchant, store))


@root_only
@pytest.mark.parametrize(
    "fields, message",
    [
        ({"price": "", "currency": "USD"}, "price is required"),
        ({"price": "ten", "currency": "USD"}, "price must be a number"),
        ({"price": "-3", "currency": "USD"}, "price must be greater than 0"),
        ({"price": "5", "currency": "XYZ"}, "currency XYZ is not supported"),
        ({"price": "5", "currency": "USD", "buyerEmail": "not an address"}, "buyer email"),
    ],
)
def test_a_refused_invoice_is_explained_on_the_page_with_the_form_kept(api_url, merchant, store, fields, message):  # noqa: F811
    refused = _new_invoice(api_url, merchant, store, orderId="kept-order", **fields)
    assert refused.status_code == 400 and message in text_of(refused)
    assert 'value="kept-order"' in refused.text and '<details class="card new-invoice" open>' in refused.text
    assert "No invoices yet." in text_of(refused)


@root_only
def test_a_store_without_a_wallet_cannot_invoice_from_the_page(api_url, merchant, user):  # noqa: F811
    bare = stores.create_store(user.login, "No wallet yet", "USD")
    refused = _new_invoice(api_url, merchant, bare, price="5", currency="USD")
    assert refused.status_code == 400 and "wallet" in text_of(refused)


def test_only_the_stores_merchant_creates_its_invoices(api_url, merchant, store, other_store):  # noqa: F811
    list_url = f"{api_url}/stores/{store.store_id}/invoices"
    token = csrf_token(merchant.get(list_url))
    refused = merchant.post(
        f"{api_url}/stores/{other_store.store_id}/invoices",
        data={"price": "5", "currency": "USD", "csrf_token": token},
        allow_redirects=False,
    )
    assert refused.status_code == 404
    assert invoices.count(other_store.store_id, {}, 10) == 0


@root_only
@pytest.mark.parametrize(
    "price, currency, shown",
    [("150000", "JPY", "150,000 JPY"), ("1234.5", "USD", "1,234.50 USD"), ("1.125", "USD", "1.125 USD")],
)
def test_money_is_shown_to_its_currency_decimals(api_url, merchant, store, price, currency, shown):  # noqa: F811
    made = _new_invoice(api_url, merchant, store, price=price, currency=currency)
    invoice = merchant.get(made.headers["Location"])
    checkout_url = re.search(r'href="([^"]+/invoice\?id=[^"]+)"', invoice.text).group(1)
    checkout = merchant.get(checkout_url)
    assert f"Price {shown}" in text_of(invoice) and shown in text_of(_page(api_url, merchant, store))
    assert f'<span class="amount-fiat">{shown}</span>' in checkout.text
    if currency == "JPY":
        # 150,000 JPY at 9,750,000 JPY/BTC: 0.01538461... BTC, rounded up to the satoshi.
        assert "0.01538462 BTC" in text_of(checkout) and "Rate: 9,750,000 JPY/BTC" in text_of(checkout)
        assert "Amount 0.01538462 BTC at 9,750,000 JPY/BTC" in text_of(invoice)
