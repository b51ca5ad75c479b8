"""DynamoDB requests and handler time per API call, counted at the wire.

    PYTHONPATH=. python bench/api_requests.py [--calls N] [--invoices N]

Starts its own moto DynamoDB server and puts a small counting HTTP proxy between pynamodb and it,
so every request the service sends is seen, with the number of items each Query read
(`ScannedCount`). The API is served over HTTP on localhost as in the tests; a Chalice middleware
times each handler (what a Lambda invocation would bill, minus cold start). Then one store is
filled with 10,000 invoices (batch writes) to show what filtered searches read there.

Handler times include moto's own speed: it answers an index Query by walking the whole table in
Python, so searches in the large store wait on moto for hundreds of milliseconds that DynamoDB would
not. The proxy therefore also times each request it forwards, and "own ms" is the handler's time
less that wait: the service's own work (signature check, parsing, views, JSON), what would remain
with a fast database. Medians; they compare call kinds rather than predict latency on AWS.
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The BIP84 test vector account ("abandon ... about"), and its second account for the second store
# (a wallet belongs to one store).
BIP84_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
BIP84_SECOND_ACCOUNT = (
    "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7"
)
# A create: the token, the store (its wallet, before anything is reserved), the index, the address claim, the invoice.
# A search page: the token, the index's keys, the page's invoices by key (the indexes carry no more).
BOUNDS = {"signed POST /invoices": 5, "signed GET /invoices/{id}": 2, "signed GET /invoices (one page)": 3}
MAX_ITEMS_READ_FOR_TEN = 30
UNINDEXED_COMBINATION = "itemCode+status, limit=10"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WireLog:
    """What went through the proxy since the last `take()`."""

    operations: list[str] = field(default_factory=list)
    items_read: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, items_read: int, seconds: float) -> None:
        with self.lock:
            self.operations.append(operation)
            self.items_read += items_read
            self.seconds += seconds

    def take(self) -> tuple[list[str], int, float]:
        with self.lock:
            taken = self.operations, self.items_read, self.seconds
            self.operations, self.items_read, self.seconds = [], 0, 0.0
            return taken


def counting_proxy(port: int, upstream_port: int, log: WireLog) -> ThreadingHTTPServer:
    """Forwards DynamoDB's JSON-over-POST protocol to moto, noting each operation and what it read."""
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
        disable_nagle_algorithm = True

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if getattr(local, "upstream", None) is None:
                local.upstream = http.client.HTTPConnection("127.0.0.1", upstream_port)
            headers = {name: value for name, value in self.headers.items() if name.lower() != "connection"}
            started = time.perf_counter()
            local.upstream.request("POST", self.path, body=body, headers=headers)
            response = local.upstream.getresponse()
            answer = response.read()
            waited = time.perf_counter() - started
            operation = self.headers.get("X-Amz-Target", "?").rpartition(".")[2]
            try:
                read = json.loads(answer).get("ScannedCount", 0) if operation in ("Query", "Scan") else 0
            except ValueError:
                read = 0
            log.record(operation, read, waited)
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Row:
    kind: str
    calls: int = 0
    requests: list[int] = field(default_factory=list)
    operations: Counter = field(default_factory=Counter)
    items_read: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    handler_ms: list[float] = field(default_factory=list)
    own_ms: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, log: WireLog, handler_times: list[float]):
        self.log = log
        self.handler_times = handler_times
        self.rows: list[Row] = []

    def measure(self, kind: str, calls: int, call) -> Row:
        """Run `call()` (an HTTP request returning the response) `calls` times."""
        row = Row(kind)
        for _ in range(calls):
            self.log.take()
            self.handler_times.clear()
            response = call()
            if response.status_code != 200:
                sys.exit(f"{kind}: HTTP {response.status_code} {response.text}")
            operations, items_read, dynamodb_seconds = self.log.take()
            data = response.json()["data"]
            row.calls += 1
            row.requests.append(len(operations))
            row.operations.update(operations)
            row.items_read.append(items_read)
            row.returned.append(len(data) if isinstance(data, list) else 1)
            row.handler_ms.append(self.handler_times[-1] * 1000)
            row.own_ms.append((self.handler_times[-1] - dynamodb_seconds) * 1000)
        self.rows.append(row)
        return row

    def print_table(self) -> None:
        header = ("call", "calls", "DynamoDB requests", "operations", "items read", "returned", "handler ms", "own ms")
        lines = [header]
        for row in self.rows:
            per_call = ", ".join(f"{count / row.calls:g} {name}" for name, count in sorted(row.operations.items()))
            lines.append(
                (
                    row.kind,
                    str(row.calls),
                    _spread(row.requests),
                    per_call or "none",
                    _spread(row.items_read),
                    _spread(row.returned),
                    f"{statistics.median(row.handler_ms):.1f}",
                    f"{statistics.median(row.own_ms):.1f}",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        for number, line in enumerate(lines):
            print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
            if number == 0:
                print("  ".join("-" * width for width in widths))


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def fill(store, count: int) -> dict:
    """`count` invoices over the past `count` minutes, written in batches; returns what the searches should find.

    Made as `invoices.create` makes them, with the same search-index keys; 10 are `paid`, the rest spread
    over the other states, so the status index has to do the work.
    """
    from chalicelib.models import InvoiceModel, StoreModel, now_ms
    from chalicelib.payments.wallet import Wallet

    rng = random.Random(84)
    addresses = Wallet.parse(store.wallet).addresses(0, count)
    start = now_ms() - count * 60_000
    paid = set(rng.sample(range(count), 10))
    expected = Counter()
    with InvoiceModel.batch_write() as batch:
        for i in range(count):
            status = "paid" if i in paid else rng.choice(["expired", "expired", "expired", "complete", "new"])
            item_code = f"SKU-{i % 20}"
            order_id = f"order-{i}"
            expected[("status", status)] += 1
            expected[("itemCode", item_code)] += 1
            expected[("itemCode+status", item_code, status)] += 1
            batch.save(
                InvoiceModel(
                    f"bench{i:06d}",
                    store_id=store.store_id,
                    token="bench",
                    facade="merchant",
                    created=start + i * 60_000,
                    expiration=start + i * 60_000 + 15 * 60_000,
                    status=status,
                    price="10",
                    currency="USD",
                    rate="65000",
                    btc_due_sats=15385,
                    address=addresses[i],
                    invoice_token=f"bench-token-{i}",
                    address_index=i,
                    transaction_speed="medium",
                    order_id=order_id,
                    item_code=item_code,
                    store_status=f"{store.store_id}#{status}",
                    store_order_id=f"{store.store_id}#{order_id}",
                    store_item_code=f"{store.store_id}#{item_code}",
                )
            )
    store.update(actions=[StoreModel.next_address_index.set(count)])
    expected["start"] = start
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per kind (default 30)")
    parser.add_argument("--invoices", type=int, default=10_000, help="invoices in the large store (default 10000)")
    options = parser.parse_args()

    moto_port, proxy_port = free_port(), free_port()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{proxy_port}",
            "STAGE": "bench",
            "RATE_SOURCE": "fixed",
            "BITCOIN_NETWORK": "main",
        }
    )
    os.environ.pop("PUBLIC_BASE_URL", None)

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    log = WireLog()
    proxy = counting_proxy(proxy_port, moto_port, log)

    from app import app
    from chalicelib.billing import stores
    from chalicelib.models import create_tables
    from chalicelib.security import tokens, users
    from tests.bitid_client import BitIdClient
    from tests.gateway import LocalApi

    create_tables()
    handler_times: list[float] = []

    @app.middleware("http")
    def time_handler(event, get_response):
        started = time.perf_counter()
        response = get_response(event)
        handler_times.append(time.perf_counter() - started)
        return response

    server = LocalApi(app, prefix="/api")
    user = users.create_user("bench", "bench password")

    def paired_merchant(store) -> BitIdClient:
        client = BitIdClient(server.url)
        code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code
        client.token = tokens.claim(code, client.sin).token
        return client

    bench = Bench(log, handler_times)
    small = stores.create_store(user.login, "Small shop", wallet=BIP84_ZPUB)
    merchant = paired_merchant(small)
    calls = options.calls
    invoice_ids = []

    def create_invoice():
        response = merchant.post("/invoices", {"price": "12.50", "currency": "USD", "orderId": f"o-{len(invoice_ids)}"})
        invoice_ids.append(response.json()["data"]["id"])
        return response

    bench.measure("signed POST /invoices", calls, create_invoice)
    bench.measure("signed GET /invoices/{id}", calls, lambda: merchant.get(f"/invoices/{random.choice(invoice_ids)}"))
    public = BitIdClient(server.url)
    bench.measure("public GET /invoices/{id}", calls, lambda: public.get(f"/invoices/{random.choice(invoice_ids)}"))
    bench.measure("signed GET /invoices (one page)", calls, lambda: merchant.get("/invoices"))
    bench.measure("GET /rates", calls, lambda: public.get("/rates", signed=False))

    started = time.perf_counter()
    large = stores.create_store(user.login, "Large shop", wallet=BIP84_SECOND_ACCOUNT)
    expected = fill(large, options.invoices)
    fill_seconds = time.perf_counter() - started
    log.take()
    big = paired_merchant(large)
    day = time.strftime("%Y-%m-%d", time.gmtime(expected["start"] / 1000 + options.invoices * 60 - 3600))
    one_day = {"dateStart": day, "dateEnd": day}

    searches = {
        "status=paid": ({"status": "paid"}, 10),
        "orderId": ({"orderId": "order-1234"}, 1),
        "itemCode, limit=10": ({"itemCode": "SKU-7", "limit": "10"}, 10),
        "one day, limit=10": ({**one_day, "limit": "10"}, 10),
        "status=expired, one day, limit=10": ({"status": "expired", **one_day, "limit": "10"}, 10),
        "no filter, limit=10": ({"limit": "10"}, 10),
        "no filter, one page": ({}, 100),
        # No index carries item code and status together: the item index is read and filtered on status.
        UNINDEXED_COMBINATION: ({"itemCode": "SKU-7", "status": "complete", "limit": "10"}, 10),
    }
    for name, (params, count) in searches.items():
        kind = f"search in {options.invoices:,}: {name}"
        row = bench.measure(kind, max(calls // 3, 1), lambda params=params: big.get("/invoices", params))
        if set(row.returned) != {count}:
            sys.exit(f"{kind}: returned {row.returned}, expected {count} each time")

    print(
        f"paylambda API, DynamoDB requests per call at the wire (moto {moto_port} via counting proxy); "
        f"{calls} calls per kind, {options.invoices:,} invoices filled in {fill_seconds:.1f} s"
    )
    print("handler ms: median time in the route handler; own ms: the same less the time spent waiting on moto")
    print()
    bench.print_table()
    print()
    failures = []
    for row in bench.rows:
        if row.kind in BOUNDS and max(row.requests) > BOUNDS[row.kind]:
            failures.append(f"{row.kind}: {max(row.requests)} requests > {BOUNDS[row.kind]}")
        if "Scan" in row.operations:
            failures.append(f"{row.kind}: a Scan on a request path")
        bounded_search = row.kind.startswith("search") and not row.kind.endswith(UNINDEXED_COMBINATION)
        if bounded_search and max(row.returned) == 10 and max(row.items_read) > MAX_ITEMS_READ_FOR_TEN:
            failures.append(f"{row.kind}: read {max(row.items_read)} items for 10 (bound {MAX_ITEMS_READ_FOR_TEN})")
    for kind, bound in BOUNDS.items():
        print(f"bound: {kind} <= {bound} DynamoDB requests")
    print(f"bound: a filtered search returning 10 reads <= {MAX_ITEMS_READ_FOR_TEN} items")
    print("\n".join(f"OVER: {failure}" for failure in failures) or "all bounds met")

    server.close()
    proxy.shutdown()
    moto.stop()


if __name__ == "__main__":
    main()
