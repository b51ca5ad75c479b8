"""Drives bitpay 8.0.3's real Client against the API; run by tests/test_bitpay8.py in a Python that has it.

bitpay 8 and bitpay 2.6 share the package name `bitpay`, so this runs in its own process, with
bitpay 8 first on the path. Arguments: the API's base URL, a PEM key file, a merchant token and
a pos token, both bound to that key. Standard input: a JSON object of invoice bodies read
elsewhere (the public view) to parse with bitpay 8's Invoice model as well. Standard output: a
JSON report of what the client got back, as its pydantic models parsed it.
"""

import json
import sys
from datetime import UTC, datetime

from bitpay.client import Client
from bitpay.clients.bitpay_client import BitPayClient
from bitpay.models.facade import Facade
from bitpay.models.invoice.buyer import Buyer
from bitpay.models.invoice.invoice import Invoice
from bitpay.utils.token_container import TokenContainer


def dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def main() -> None:
    base_url, pem_path, merchant_token, pos_token = sys.argv[1:]
    with open(pem_path) as pem_file:
        pem = pem_file.read()
    token_container = TokenContainer()
    token_container.add_merchant(merchant_token)
    token_container.add_pos(pos_token)
    client = Client(BitPayClient(base_url + "/", pem), token_container)

    created = client.create_invoice(
        Invoice(
            price=12.5,
            currency="USD",
            order_id="B8-1",
            item_code="SKU-8",
            item_desc="Blue mug",
            pos_data='{"ref": 8}',
            notification_url="https://shop.example/ipn",
            redirect_url="https://shop.example/thanks",
            transaction_speed="high",
            buyer=Buyer(name="Ann Lee", email="ann@example.com", postal_code="62701", notify=True),
        )
    )
    today = datetime.fromtimestamp(created.invoice_time / 1000, UTC).strftime("%Y-%m-%d")
    report = {
        "created": dump(created),
        "fetched": dump(client.get_invoice(created.id)),
        "by_guid": dump(client.get_invoice_by_guid(created.guid)),
        "searched": [dump(invoice) for invoice in client.get_invoices(today, today, "new", "B8-1", 10)],
        "pos_created": dump(client.create_invoice(Invoice(price=3, currency="EUR"), Facade.POS)),
        "rates": dump(client.get_rates()),
        "usd_rate": dump(client.get_currency_pair_rate("BTC", "USD")),
        "parsed": {name: dump(Invoice(**body)) for name, body in json.load(sys.stdin).items()},
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
