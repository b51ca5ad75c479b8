"""What the hosted pages cost: cold start, render time and page weight.

    PYTHONPATH=. python bench/pages.py

Prints figures measured in this run, with ratios between them rather than
absolute targets (machines differ). Needs no database: the pages are rendered
from an invoice view built in memory.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_IMPORT_PROBE = """
import sys, time
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
print(elapsed, int("jinja2" in sys.modules), int("segno" in sys.modules))
"""


def cold_import(module: str, runs: int = 5) -> tuple[float, bool, bool]:
    """Median seconds to import `module` in a fresh interpreter, and whether jinja2/segno came with it."""
    timings, loaded = [], None
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        ).stdout.split()
        timings.append(float(output[0]))
        loaded = (output[1] == "1", output[2] == "1")
    return statistics.median(timings), *loaded


def timed(function, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        function()
    return (time.perf_counter() - start) / runs


def invoice_view() -> dict:
    now = int(time.time() * 1000)
    address = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    return {
        "id": "N2xpkM5apby8qNfwLFVced",
        "url": "https://pay.example.com/api/invoice?id=N2xpkM5apby8qNfwLFVced",
        "status": "new",
        "exceptionStatus": False,
        "price": 10.0,
        "currency": "USD",
        "itemDesc": "Blue T-shirt, size M",
        "invoiceTime": now,
        "expirationTime": now + 15 * 60_000,
        "currentTime": now,
        "btcDue": "0.00015385",
        "btcPaid": "0.00000000",
        "btcPrice": "0.00015385",
        "rate": 65000.0,
        "bitcoinAddress": address,
        "paymentCodes": {"BTC": {"BIP21": f"bitcoin:{address}?amount=0.00015385"}},
    }


def invoice_model(view: dict, **changes):
    """The same invoice as a stored one reads, held in memory only (never saved)."""
    from chalicelib.models import InvoiceModel

    fields = {
        "store_id": "store",
        "token": "token",
        "facade": "merchant",
        "created": view["invoiceTime"],
        "expiration": view["expirationTime"],
        "status": view["status"],
        "store_status": f"store#{view['status']}",
        "price": str(view["price"]),
        "currency": view["currency"],
        "rate": str(view["rate"]),
        "btc_due_sats": 15_385,
        "address": view["bitcoinAddress"],
        "address_index": 0,
        "invoice_token": "token",
        "transaction_speed": "medium",
        "item_desc": view["itemDesc"],
    }
    return InvoiceModel(view["id"], **{**fields, **changes})


def main() -> None:
    sys.path.insert(0, str(ROOT))
    api_only, _, _ = cold_import("chalicelib.api.routes")
    whole_app, jinja_at_start, segno_at_start = cold_import("app")
    print(f"cold import, API blueprint only:    {api_only * 1000:7.1f} ms")
    print(f"cold import, app with the pages:    {whole_app * 1000:7.1f} ms  (x{whole_app / api_only:.2f})")
    print(f"jinja2 loaded at start-up: {jinja_at_start}; segno loaded at start-up: {segno_at_start}")

    from chalicelib.pages import checkout
    from chalicelib.pages.rendering import Visit
    from chalicelib.web import ApiRequest

    view = invoice_view()
    request = ApiRequest(method="GET", headers={"host": "pay.example.com"}, path="/invoice", route_path="/invoice")

    def render_checkout() -> str:
        return (
            Visit(request)
            .render(
                "checkout.html",
                invoice=view,
                store_name="Shop",
                status_region=checkout.status_region(view, None),
                status_query={"id": view["id"]},
            )
            .body
        )

    uri = view["paymentCodes"]["BTC"]["BIP21"]
    first = timed(render_checkout, 1)
    qr = timed(lambda: checkout.qr_svg.__wrapped__(uri), 50)
    region = timed(lambda: checkout.status_region(view, None), 50)
    warm = timed(render_checkout, 50)
    print(f"checkout page, first render (imports, template compile): {first * 1000:7.2f} ms")
    print(f"checkout page, warm render (QR code cached): {warm * 1000:7.2f} ms (first/warm x{first / warm:.1f})")
    print(f"  the QR code when drawn (segno SVG): {qr * 1000:7.2f} ms (x{qr / warm:.1f} a warm render)")
    print(f"  the status region (QR code cached): {region * 1000:7.2f} ms")

    # Each poll of an open checkout answers the status region rendered anew.
    awaiting = invoice_model(view)
    paid = invoice_model(view, status="paid", btc_paid_sats=awaiting.btc_due_sats)
    fields_only = len(json.dumps({field: view[field] for field in checkout.STATUS_FIELDS}))

    # A paid invoice's region links back to its store, which the poll reads: here the store as DynamoDB
    # would answer it, held in memory (this bench measures the rendering, with no database).
    from chalicelib.billing import stores
    from chalicelib.models import StoreModel

    stores.get_store = lambda store_id: StoreModel(store_id, owner="bench", name="Shop", website="https://shop.example")

    def poll(invoice) -> str:
        return json.dumps(checkout.poll(invoice, "https://pay.example.com"))

    checkout.qr_svg.cache_clear()
    first_poll = timed(lambda: poll(awaiting), 1)
    later_polls = timed(lambda: poll(awaiting), 50)
    paid_polls = timed(lambda: poll(paid), 50)
    awaiting_size, paid_size = len(poll(awaiting)), len(poll(paid))
    print(
        f"poll answer while awaiting payment: {awaiting_size} B (x{awaiting_size / fields_only:.0f} the "
        f"{fields_only} B of the status fields alone); first poll {first_poll * 1000:.2f} ms, "
        f"later polls {later_polls * 1000:.2f} ms (x{first_poll / later_polls:.0f} faster: QR code cached)"
    )
    print(f"poll answer once paid: {paid_size} B in {paid_polls * 1000:.2f} ms")

    page = render_checkout().encode()
    print(f"checkout weight: {len(page)} B, its stylesheet and script inline, nothing else fetched, no third party")


if __name__ == "__main__":
    main()
