"""Invoice creation and status rules that `make mutate` found unguarded (scripts/mutate.py).

Each test fails on a change to chalicelib/billing/invoices.py that the rest of the suite let
through; the comment on each names it. The creates call `invoices.create` directly, with its
`save` seam standing in for a second request that writes in between (a race HTTP cannot
produce on demand).
"""

from decimal import Context, Decimal, Overflow, localcontext

import pytest
from pynamodb.exceptions import PutError

from chalicelib.billing import invoices, stores
from chalicelib.errors import BadRequest
from chalicelib.messaging import notifications
from chalicelib.models import InvoiceModel
from chalicelib.security.auth import Caller

BODY = {"price": "10", "currency": "USD", "guid": "race-1"}


def test_a_price_worth_exactly_whole_satoshis_at_a_rate_of_many_digits_is_due_exactly():
    """Caught: the default 28 digits of precision (price × 10^8 rounded up first: a satoshi too many).

    A rate source's price is read exactly as it is written, in any number of digits, so a price worth
    exactly N satoshis can take more than 28 digits once multiplied.
    """
    rate, due = Decimal("12345.678901234567890123"), 123_456_789
    with localcontext(Context(prec=100)):
        price = due * rate / 100_000_000
    assert invoices.amount_due_sats(price, rate) == due


def test_a_runaway_amount_due_is_an_error_not_a_number():
    """Caught: no upper exponent limit (a rate near 0 would ask for some 10^70 satoshis)."""
    with pytest.raises(Overflow):
        invoices.amount_due_sats(invoices.MAX_PRICE, Decimal("1e-50"))


def _caller(store) -> Caller:
    return Caller(identity=None, token=None, public_store=store.store_id)


def test_a_guid_created_by_two_requests_at_once_gives_both_the_invoice_that_was_saved(store):
    """Caught: `_retried(caller, None)`, `condition_failed(None)` on the lost save."""
    rivals = []

    def save_after_a_rival(invoice):
        # The rival checked for the guid at the same moment as this request, and writes first.
        rivals.append(invoices.create(_caller(store), BODY))
        notifications.save_created(invoice)

    loser = invoices.create(_caller(store), BODY, save=save_after_a_rival, conflicts=notifications.CREATION_CONFLICTS)

    [winner] = rivals
    assert (loser.invoice_id, loser.address) == (winner.invoice_id, winner.address)
    assert InvoiceModel.get(winner.invoice_id).address == winner.address


def test_an_invoice_carries_the_stores_contact_address_for_its_mail(store):
    """Caught: `contact_email=None` (the merchant would never be mailed about the invoice's payments)."""
    stores.update_settings(store, {**store.attribute_values, "contact_email": "owner@shop.example"})

    invoice = invoices.create(_caller(store), {"price": "10", "currency": "USD"})

    assert InvoiceModel.get(invoice.invoice_id).contact_email == "owner@shop.example"


def test_a_failed_write_of_an_invoice_with_a_guid_is_an_error_not_a_retry(store):
    """Caught: `fields["guid"] or condition_failed(exc)` (a throttled write taken for a lost race)."""

    def throttled(invoice):
        raise PutError("ProvisionedThroughputExceededException")

    with pytest.raises(PutError):
        invoices.create(_caller(store), BODY, save=throttled)


EXPIRATION = 1_700_000_900_000


@pytest.mark.parametrize(
    ("status", "now", "shown"),
    [
        ("new", EXPIRATION, "new"),
        ("new", EXPIRATION + 1, "expired"),
        ("paid", EXPIRATION + 1, "paid"),
        ("confirmed", EXPIRATION + 1, "confirmed"),
        ("expired", EXPIRATION, "expired"),
    ],
)
def test_an_unpaid_invoice_shows_expired_from_a_millisecond_after_its_expiration(status, now, shown):
    """Caught: `>=` for `>`, the status compared with `!=`, and the condition or the result changed."""
    assert invoices.current_status(InvoiceModel("i", status=status, expiration=EXPIRATION), now) == shown


@pytest.mark.parametrize(("tax", "kept"), [("", 0), ("0", 0), ("0.5", Decimal("0.5")), ("10", 10)])
def test_tax_included_from_none_or_zero_up_to_the_whole_price_is_kept(tax, kept):
    """Caught: `1 <=` or `0 <` for `0 <=`, `< price` for `<= price`, and empty text not read as none."""
    assert invoices.parse_request({"price": "10", "currency": "USD", "taxIncluded": tax})["tax_included"] == kept


@pytest.mark.parametrize("price", [True, [10], {"amount": 10}])
def test_a_price_that_is_no_number_at_all_is_refused_as_such(price):
    """Caught: `and` for `or` (a boolean or a list read as text, and refused as badly written digits)."""
    with pytest.raises(BadRequest) as refused:
        invoices.parse_request({"price": price, "currency": "USD"})
    assert str(refused.value) == "price must be a number"


def test_a_price_of_exactly_the_maximum_is_taken_and_a_hundredth_more_refused():
    """Caught: `>=` for `>`."""
    assert invoices.parse_request({"price": "1000000000000", "currency": "USD"})["price"] == invoices.MAX_PRICE
    with pytest.raises(BadRequest) as refused:
        invoices.parse_request({"price": "1000000000000.01", "currency": "USD"})
    assert str(refused.value) == "price is too large"


@pytest.mark.parametrize("price", [0, "0", "0.00", "-0"])
def test_a_price_of_nothing_is_refused_as_such(price):
    """Caught: `price < 0` for `price <= 0` (nothing priced would be refused as below the dust limit)."""
    with pytest.raises(BadRequest) as refused:
        invoices.parse_request({"price": price, "currency": "USD"})
    assert str(refused.value) == "price must be greater than 0"
