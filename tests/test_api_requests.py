"""How many DynamoDB requests each API call makes, and how many items a search reads.

Deterministic, so asserted here on a small store; bench/api_requests.py measures the same at the
wire, with timings, in a store of 10,000 invoices.
"""

import pytest
from pynamodb.connection.base import Connection

from tests.api_fixtures import root_only

INVOICE = {"price": 10, "currency": "USD"}


class DynamoDBCalls:
    """Every request pynamodb sends while `during` runs, with the items each Query read."""

    def __init__(self):
        self.operations: list[str] = []
        self.items_read = 0
        self.items_fetched = 0
        self.consistent_gets: list[bool] = []

    def during(self, action):
        self.operations, self.items_read, self.items_fetched, self.consistent_gets = [], 0, 0, []
        response = action()
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
def dynamodb_calls(monkeypatch) -> DynamoDBCalls:
    calls = DynamoDBCalls()
    dispatch = Connection.dispatch

    def counted_dispatch(connection, operation_name, operation_kwargs):
        data = dispatch(connection, operation_name, operation_kwargs)
        calls.operations.append(operation_name)
        calls.items_read += (data or {}).get("ScannedCount", 0)
        if operation_name == "BatchGetItem":
            calls.items_fetched += sum(len(table["Keys"]) for table in operation_kwargs["RequestItems"].values())
        if operation_name == "GetItem":
            calls.consistent_gets.append(operation_kwargs.get("ConsistentRead", False))
        return data

    monkeypatch.setattr(Connection, "dispatch", counted_dispatch)
    return calls


def test_signed_create_makes_five_requests(merchant, dynamodb_calls):
    dynamodb_calls.during(lambda: merchant.post("/invoices", INVOICE))

    # The token; the store, read so that every check runs before an address index is reserved;
    # the address counter; the address's own claim; the invoice.
    assert dynamodb_calls.operations == ["GetItem", "GetItem", "UpdateItem", "PutItem", "PutItem"]
    assert dynamodb_calls.consistent_gets == [True, True]


def test_signed_read_makes_two_requests(merchant, dynamodb_calls):
    invoice_id = merchant.post("/invoices", INVOICE).json()["data"]["id"]

    dynamodb_calls.during(lambda: merchant.get(f"/invoices/{invoice_id}"))

    assert dynamodb_calls.operations == ["GetItem", "GetItem"]


def test_token_and_invoice_reads_are_strongly_consistent(merchant, dynamodb_calls):
    # DynamoDB's default read can miss a write made a moment before: a revocation, or the invoice just made.
    invoice_id = merchant.post("/invoices", INVOICE).json()["data"]["id"]

    dynamodb_calls.during(lambda: merchant.get(f"/invoices/{invoice_id}"))

    assert dynamodb_calls.consistent_gets == [True, True]


def test_public_read_makes_one_request(merchant, dynamodb_calls):
    invoice_id = merchant.post("/invoices", INVOICE).json()["data"]["id"]

    dynamodb_calls.during(lambda: merchant.get(f"/invoices/{invoice_id}", token=False, signed=False))

    assert dynamodb_calls.operations == ["GetItem"]


def test_rates_make_none(merchant, dynamodb_calls):
    dynamodb_calls.during(lambda: merchant.get("/rates", token=False, signed=False))

    assert dynamodb_calls.operations == []


SEARCHES = [
    ({}, 30),
    ({"itemCode": "MUG"}, 10),
    ({"orderId": "order-7"}, 1),
    ({"status": "new", "limit": "10"}, 10),
    ({"limit": "10", "offset": "5"}, 10),
]


@root_only
def test_a_search_page_is_three_requests_reading_only_what_it_needs(merchant, dynamodb_calls):
    for number in range(30):
        item = "MUG" if number % 3 == 0 else "TEA"
        merchant.post("/invoices", {**INVOICE, "itemCode": item, "orderId": f"order-{number}"})

    for params, returned in SEARCHES:
        response = dynamodb_calls.during(lambda params=params: merchant.get("/invoices", params))

        assert len(response.json()["data"]) == returned, params
        # The token; the index, which carries keys and what it filters on; the page's invoices by key.
        assert dynamodb_calls.operations == ["GetItem", "Query", "BatchGetItem"], params
        # Through an index keyed on the filter: the index items read are those returned (and any skipped
        # by offset), and only those returned are read from the table.
        assert dynamodb_calls.items_read == returned + int(params.get("offset", 0)), params
        assert dynamodb_calls.items_fetched == returned, params
