"""GET /invoices: the merchant's search, with the filters and date formats BitPay and BTCPay clients send."""

from datetime import UTC, datetime

import pytest

from chalicelib.models import InvoiceModel
from tests.api_fixtures import root_only
from tests.bitid_client import BitIdClient


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def create(client: BitIdClient, created: str, **fields) -> str:
    """An invoice made over HTTP, then moved to `created` (UTC) as if made then."""
    response = client.post("/invoices", {"price": 1, "currency": "USD", **fields})
    assert response.status_code == 200, response.text
    invoice_id = response.json()["data"]["id"]
    InvoiceModel.get(invoice_id).update(actions=[InvoiceModel.created.set(at(created))])
    return invoice_id


@pytest.fixture
def pay(chain, watch):
    """`pay(invoice_id)`: the buyer pays the amount due and the watcher records it (the invoice is paid)."""

    def paid(invoice_id: str) -> None:
        invoice = InvoiceModel.get(invoice_id)
        chain.pay(invoice.address, invoice.btc_due_sats)
        watch()
        assert InvoiceModel.get(invoice_id).status == "paid"

    return paid


def search(client: BitIdClient, path: str = "/invoices", **params) -> list[str]:
    response = client.get(path, params)
    assert response.status_code == 200, response.text
    return [invoice["id"] for invoice in response.json()["data"]]


@pytest.fixture
def around_midnight(merchant) -> dict[str, str]:
    """Invoices either side of the day 2024-03-15 (UTC) and at both of its ends."""
    return {
        when: create(merchant, when)
        for when in (
            "2024-03-14T23:59:59.999",
            "2024-03-15T00:00:00.000",
            "2024-03-15T12:00:00.000",
            "2024-03-15T23:59:59.999",
            "2024-03-16T00:00:00.000",
        )
    }


def test_newest_first(merchant, around_midnight):
    assert search(merchant) == list(reversed(around_midnight.values()))


@pytest.mark.parametrize(
    ("start", "end"),
    [("2024-03-15", "2024-03-15"), ("03/15/2024", "03/15/2024"), ("2024-03-15", "03/15/2024")],
    ids=["iso", "us", "mixed"],
)
def test_date_range_covers_whole_days_end_included(merchant, around_midnight, start, end):
    found = search(merchant, dateStart=start, dateEnd=end)

    assert found == [around_midnight[f"2024-03-15T{t}"] for t in ("23:59:59.999", "12:00:00.000", "00:00:00.000")]


def test_date_start_or_end_alone(merchant, around_midnight):
    assert search(merchant, dateStart="2024-03-16") == [around_midnight["2024-03-16T00:00:00.000"]]
    assert search(merchant, dateEnd="03/14/2024") == [around_midnight["2024-03-14T23:59:59.999"]]


def test_far_dates_are_fine(merchant, around_midnight):
    assert len(search(merchant, dateStart="0001-01-01", dateEnd="12/31/9999")) == 5


@root_only
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"dateStart": "15.03.2024"}, "dateStart"),
        ({"dateEnd": "2024-02-30"}, "dateEnd"),
        ({"dateStart": "2024-03-16", "dateEnd": "2024-03-15"}, "dateEnd"),
        ({"limit": "many"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "10001"}, "offset"),
        ({"next": "not a cursor"}, "next"),
        ({"next": "WyIxIiwgMl0"}, "next"),
    ],
)
def test_bad_search_parameters_are_named(merchant, params, field):
    response = merchant.get("/invoices", params)

    assert response.status_code == 400
    assert response.json()["error"].startswith(field)


def test_status_filter(merchant, pay):
    paid = create(merchant, "2024-03-15T10:00:00", orderId="A")
    unpaid = create(merchant, "2024-03-15T11:00:00", orderId="A")
    pay(paid)

    assert search(merchant, status="paid") == [paid]
    assert search(merchant, status="new") == [unpaid]
    assert search(merchant, status="complete") == []


def test_order_id_and_item_code_filters(merchant, pay):
    mug_a = create(merchant, "2024-03-15T10:00:00", orderId="A", itemCode="MUG")
    tea_a = create(merchant, "2024-03-15T11:00:00", orderId="A", itemCode="TEA")
    mug_b = create(merchant, "2024-03-15T12:00:00", orderId="B", itemCode="MUG")
    pay(mug_a)

    assert search(merchant, orderId="A") == [tea_a, mug_a]
    assert search(merchant, itemCode="MUG") == [mug_b, mug_a]
    assert search(merchant, orderId="A", itemCode="MUG") == [mug_a]
    assert search(merchant, orderId="A", status="paid") == [mug_a]
    assert search(merchant, itemCode="MUG", status="new") == [mug_b]
    assert search(merchant, orderId="A", dateStart="2024-03-15", dateEnd="2024-03-15", status="new") == [tea_a]
    assert search(merchant, orderId="C") == []


def test_limit_and_offset_page_through_newest_first(merchant, around_midnight):
    newest_first = list(reversed(around_midnight.values()))

    assert search(merchant, limit="2") == newest_first[:2]
    assert search(merchant, limit="2", offset="2") == newest_first[2:4]
    assert search(merchant, limit="2", offset="4") == newest_first[4:]
    assert search(merchant, offset="5") == []
    assert search(merchant, limit="0") == newest_first  # 0 means the default, as for BitPay


def test_next_continues_a_full_page_where_offset_stops(merchant, around_midnight):
    newest_first = list(reversed(around_midnight.values()))
    pages, cursor = [], None
    # At most one page more than there are: a cursor that went nowhere fails instead of looping.
    for _ in range(4):
        response = merchant.get("/invoices", {"limit": "2", **({"next": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        pages.append([invoice["id"] for invoice in response.json()["data"]])
        cursor = response.json().get("next")
        if cursor is None:
            break

    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    # A cursor carries a position only: the query's own store and filter still apply from there.
    first = merchant.get("/invoices", {"limit": "1"}).json()
    assert search(merchant, next=first["next"], status="new", limit="2") == newest_first[1:3]


def test_search_sees_only_the_stores_invoices(merchant, pair, other_store):
    own = create(merchant, "2024-03-15T10:00:00")
    other = pair("merchant", store_id=other_store.store_id)
    create(other, "2024-03-15T11:00:00")

    assert search(merchant) == [own]


def test_search_answers_with_a_trailing_slash(merchant, around_midnight):
    assert search(merchant, "/invoices/", dateStart="2024-03-16") == [around_midnight["2024-03-16T00:00:00.000"]]


def test_search_returns_full_invoices(merchant):
    invoice_id = create(merchant, "2024-03-15T10:00:00", orderId="A", posData="ref")

    invoice = merchant.get("/invoices").json()["data"][0]

    assert invoice["id"] == invoice_id and invoice["posData"] == "ref" and invoice["token"]
    assert invoice["invoiceTime"] == at("2024-03-15T10:00:00")


_STATES = [
    {"status": "new"},
    {"status": "paid", "paid": 1.0},
    {"status": "confirmed", "paid": 1.0, "confirmations": 2},
    {"status": "complete", "paid": 1.2, "confirmations": 6, "exception_status": "paidOver"},
    {"status": "expired", "cancelled": True},
    {"status": "expired", "paid": 0.5, "exception_status": "paidPartial"},
    {"status": "invalid", "paid": 1.0, "late": True},
]


def _move_to(invoice_id: str, state: dict) -> None:
    """The stored invoice as the watcher (or a cancellation) leaves it in `state`."""
    from chalicelib.models import PaymentAttribute

    invoice = InvoiceModel.get(invoice_id)
    actions = [InvoiceModel.status.set(state["status"]), InvoiceModel.store_status.set(f"x#{state['status']}")]
    if "paid" in state:
        sats = int(invoice.btc_due_sats * state["paid"])
        payment = PaymentAttribute(
            txid="ab" * 32, vout=1, amount=sats, confirmations=state.get("confirmations", 0), first_seen=invoice.created
        )
        if state.get("confirmations"):
            payment.block_height, payment.block_time = 800_000, invoice.created + 600_000
        if state.get("late"):
            payment.late = True
        actions += [InvoiceModel.payments.set([payment]), InvoiceModel.btc_paid_sats.set(sats)]
    if "exception_status" in state:
        actions.append(InvoiceModel.exception_status.set(state["exception_status"]))
    if state.get("cancelled"):
        actions.append(InvoiceModel.cancelled.set(True))
    invoice.update(actions=actions)


def test_a_search_page_shows_each_invoice_exactly_as_fetching_it_alone_does(api_url, merchant):
    """The search decodes DynamoDB's answer itself (not through pynamodb's models): same wire view, every state."""
    made = []
    for number, state in enumerate(_STATES):
        fields = {
            "orderId": f"same-{number}",
            "itemDesc": "Tea",
            "posData": '{"a": 1}',
            "redirectURL": "https://a.example/r",
        }
        if number % 2:
            fields |= {"buyer": {"name": "Ann", "email": "ann@example.com", "notify": True}, "physical": True}
            fields |= {"notificationURL": "https://a.example/ipn", "fullNotifications": True, "taxIncluded": 0.1}
        invoice_id = create(merchant, f"2024-05-0{number + 1}T10:00:00", **fields)
        _move_to(invoice_id, state)
        made.append(invoice_id)
    response = merchant.get("/invoices", {"dateStart": "2024-05-01", "dateEnd": "2024-05-09"})
    assert response.status_code == 200, response.text
    found = {view["id"]: view for view in response.json()["data"]}
    assert set(found) == set(made)
    for invoice_id in made:
        alone = merchant.get(f"/invoices/{invoice_id}").json()["data"]
        listed = found[invoice_id]
        alone.pop("currentTime"), listed.pop("currentTime")
        assert listed.keys() == alone.keys()
        for name, value in alone.items():
            assert (name, listed[name]) == (name, value)
            assert type(listed[name]) is type(value), name


@root_only
def test_status_filters_on_order_item_and_email_follow_the_invoices_status(merchant, chain, watch):
    """The orderId, itemCode and buyer email indexes carry no status: the filter reads each invoice's own."""
    same = {"orderId": "A", "itemCode": "MUG", "buyer": {"email": "Ann@Example.com"}}
    older = create(merchant, "2024-03-15T10:00:00", **same)
    newer = create(merchant, "2024-03-15T11:00:00", **same)
    keys = ({"orderId": "A"}, {"itemCode": "MUG"}, {"buyerEmail": "ann@example.com"})
    for key in keys:
        assert search(merchant, status="new", **key) == [newer, older]
        assert search(merchant, status="paid", **key) == []

    invoice = InvoiceModel.get(older)
    chain.pay(invoice.address, 1_000)
    watch()
    for key in keys:
        assert search(merchant, exceptionStatus="paidPartial", **key) == [older]
    chain.pay(invoice.address, invoice.btc_due_sats - 1_000)
    watch()

    for key in keys:
        assert search(merchant, status="new", **key) == [newer]
        assert search(merchant, status="paid", **key) == [older]
        assert search(merchant, status="new", limit="1", offset="1", **key) == []
        # Its exception status cleared (stored as NULL): none, as for one that never had any.
        assert search(merchant, exceptionStatus="none", **key) == [newer, older]
        assert search(merchant, exceptionStatus="paidPartial", **key) == []
    assert search(merchant, exceptionStatus="none") == [newer, older]
    assert search(merchant, orderId="A", itemCode="MUG", status="paid") == [older]
    assert search(merchant, orderId="A", itemCode="TEA", status="paid") == []


@root_only
def test_an_invoices_life_never_rewrites_its_order_item_and_email_index_copies(merchant, chain, watch):
    """What the watcher changes over an invoice's life (status, exceptionStatus, payments, ...) is not
    projected into these indexes (as the table declares them): a change writes no copy to them."""
    invoice = InvoiceModel.get(create(merchant, "2024-03-15T10:00:00", orderId="A", itemCode="MUG", buyerEmail="a@b.c"))
    table = InvoiceModel._get_connection()
    changed, before = set(), table.get_item(invoice.invoice_id)["Item"]
    steps = (
        lambda: chain.pay(invoice.address, 1_000),  # new, paidPartial
        lambda: chain.pay(invoice.address, invoice.btc_due_sats),  # paid, paidOver
        lambda: chain.mine(6),  # complete
    )
    for step in steps:
        step()
        watch()
        after = table.get_item(invoice.invoice_id)["Item"]
        changed |= {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        before = after
    assert {"status", "exception_status", "payments"} <= changed and after["status"] == {"S": "complete"}

    indexes = {index["IndexName"]: index for index in table.describe_table()["GlobalSecondaryIndexes"]}
    for name in ("store-order-index", "store-item-index", "store-buyer-email-index"):
        projection = indexes[name]["Projection"]
        assert projection["ProjectionType"] != "ALL", name
        keys = {key["AttributeName"] for key in indexes[name]["KeySchema"]}
        assert not changed & (keys | set(projection.get("NonKeyAttributes", ()))), name


# Several index pages of invoices read by key and filtered out before the first kept.
_FILTERED_OUT, _MATCHING = 30, 6


@pytest.fixture
def mostly_expired(merchant) -> dict[str, list[str]]:
    """Invoices of one order, item and buyer: the newest `_FILTERED_OUT` expired, the oldest `_MATCHING`
    paid; their ids by status, newest first. Copies of one made over HTTP, written straight to the table
    (as the watcher leaves them, not watched any more): dozens paid on the chain would take too long."""
    made = InvoiceModel.get(create(merchant, "2024-01-01T00:00:00", orderId="A", itemCode="MUG", buyerEmail="a@b.c"))
    made_ids = {"expired": [], "paid": []}
    with InvoiceModel.batch_write() as batch:
        for number in range(_FILTERED_OUT + _MATCHING):
            status = "expired" if number < _FILTERED_OUT else "paid"
            values = {**made.attribute_values, "invoice_id": f"{made.invoice_id}-{number}"}
            values |= {"created": at("2024-03-15T12:00:00") - number * 1000, "status": status}
            values |= {"store_status": f"{made.store_id}#{status}", "watch_network": None, "next_check": None}
            batch.save(InvoiceModel(**values))
            made_ids[status].append(values["invoice_id"])
    return made_ids


@root_only
def test_a_filtered_page_reads_on_past_the_invoices_filtered_out(merchant, mostly_expired):
    paid = mostly_expired["paid"]
    for key in ({"orderId": "A"}, {"itemCode": "MUG"}, {"buyerEmail": "A@B.C"}):
        assert search(merchant, status="paid", limit="3", offset="1", **key) == paid[1:4]
    first = merchant.get("/invoices", {"itemCode": "MUG", "status": "paid", "limit": "5"}).json()
    assert search(merchant, itemCode="MUG", status="paid", next=first["next"]) == paid[5:]


@root_only
def test_a_search_filtering_too_many_invoices_by_key_asks_for_dates(merchant, mostly_expired, monkeypatch):
    from chalicelib.billing import invoices

    monkeypatch.setattr(invoices, "MOST_FILTERED", _FILTERED_OUT)

    response = merchant.get("/invoices", {"itemCode": "MUG", "status": "paid"})

    assert response.status_code == 400
    assert "narrow the search with dateStart and dateEnd" in response.json()["error"]
    assert search(merchant, itemCode="MUG", status="expired", limit="1") == mostly_expired["expired"][:1]
