"""What the whole life of an invoice costs on AWS list prices, from measured CPU and item sizes.

    PYTHONPATH=. python bench/cost.py [--runs 10]

Measured here: the warm CPU time of each API call an invoice's life makes (the service run
in this process, moto's DynamoDB in another, so its CPU is not counted), and the invoice's and a
notification's item sizes as stored. Counted from the code itself: how often the open checkout polls
(`checkout.poll_seconds` over the minutes it is open), which static files its page links
(checkout_base.html), how often the watcher checks an invoice (`watcher.late_check_due` over the
monitoring window, once a minute while it is open), and what each write costs the table and each
index (`index_writes`, from the models' indexes and projections and the attributes the write
changes). Priced on us-east-1 list prices (below, with their date) for either API front
(deploy/http_front.py); Lambda's billed time is the CPU time at the function's share of a vCPU (its
memory in .chalice/config.json), plus its waits: on DynamoDB, on Esplora, on the shop's IPN endpoint.
Data sent out is the measured response bodies and IPNs, the buyer's gzipped on the REST front (its
stage's minimum_compression_size). The floor is what no code can save: the requests, their Lambda
invocations, and the writes the service's guarantees make (`guaranteed_write_units`).

The life: created (one POST, with an orderId as shops' plugins send), read back twice by the shop,
its checkout opened once on a browser without its static files cached and left open 3 minutes,
watched until done. Paid invoices are paid at once and mined 10 minutes later, checked on the watcher's
own schedule (`paid_life`), written at the first check after their expiry (which moves them to the
waiting watch partitions) and at each check that sees a new confirmation (the stored payments carry
their confirmations), and get three notifications (paid, confirmed, complete);
an unpaid one is written twice by the watcher (expired, then off the watch at the window's end): a
late check that finds nothing writes nothing (watcher.py).
Targets (issue 13): at most $20 per million invoices with half never paid, $10 with all paid.
"""

import argparse
import base64
import gzip
import importlib.util
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _figures import figure  # noqa: E402

TARGET_HALF_UNPAID, TARGET_ALL_PAID = 20.0, 10.0
# Issue 13's figure for the code before this work (per million invoices, half unpaid), and this
# script's (half unpaid / all paid) run on main before branch cost2: the REST front, the checkout
# polled every 30 s, every index projecting ALL, every function at 512 MB. (The script main had
# then said $70.02 / $77.22: it counted neither the static files, nor the writes at each confirming
# block, nor an index key's move as two writes, nor the checkers' and the consumer's Lambda time,
# and had creation in a transaction.)
BASELINE_HALF_UNPAID = 450.0
BASELINE_BEFORE = "$109.28 / $138.91"

# AWS list prices, us-east-1, as of 2025 (per unit named; aws.amazon.com/api-gateway/pricing,
# /lambda/pricing, /dynamodb/pricing/on-demand, /sqs/pricing).
API_FRONTS_PER_MILLION = {"REST API": 3.50, "HTTP API": 1.00}  # first 333 M (REST), 300 M (HTTP) a month
LAMBDA_REQUEST_PER_MILLION = 0.20
LAMBDA_GB_SECOND = 0.0000166667  # x86
DYNAMODB_WRITE_UNIT_PER_MILLION = 0.625
DYNAMODB_READ_UNIT_PER_MILLION = 0.125
SQS_PER_MILLION = 0.40
# Data sent out to the internet, from API Gateway and from Lambda alike (aws.amazon.com/ec2/pricing/on-demand,
# "Data Transfer OUT From Amazon EC2 To Internet", the first 10 TB a month; the first 100 GB a month are free).
TRANSFER_OUT_PER_GB = 0.09
FULL_VCPU_MB = 1769  # Lambda gives a full vCPU at 1,769 MB, a share in proportion below
DYNAMODB_WAIT_MS = 5.0
# Lambda bills the wall time, waits included. A checker waits on Esplora: assumed 100 ms an answer
# from a public server (your own electrs in the region: about 10), with ESPLORA_CONCURRENCY (4) in
# flight, so a quarter of it per invoice checked. The consumer waits on the shop's IPN endpoint:
# assumed 300 ms (a PHP shop). Neither is measured here: `--esplora-ms` and `--ipn-ms` change them.
ESPLORA_ANSWER_MS = 100.0
IPN_ANSWER_MS = 300.0
OPEN_CHECKOUT_MINUTES = 3
SHOP_READS = 2
# Shops' plugins ask for fullNotifications: paid, confirmed, complete (without it, confirmed only).
NOTIFICATIONS_WHEN_PAID = 3
# A block every 10 minutes on average; an invoice open 15 minutes (the default expiration).
BLOCK_MINUTES = 10
OPEN_INVOICE_MINUTES = 15
# DynamoDB bills a transaction's writes twice; counted so for the indexes it updates too (the
# conservative reading: AWS's pages say "every item", not whether an index's copy is one).
TRANSACTION_FACTOR = 2


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def item_bytes(item: dict) -> int:
    """DynamoDB's item size: attribute names plus values (numbers about half their digits)."""

    def value_bytes(value: dict) -> int:
        (kind, content), *_ = value.items()
        if kind == "S":
            return len(content.encode())
        if kind == "N":
            return math.ceil(len(content.lstrip("-").replace(".", "")) / 2) + 1
        if kind == "M":
            return 3 + sum(len(name.encode()) + value_bytes(inner) for name, inner in content.items())
        if kind == "L":
            return 3 + sum(1 + value_bytes(inner) for inner in content)
        return 1

    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def polls_while_open(minutes: int) -> int:
    """The polls of a checkout left open `minutes` after its page (which renders the region itself)."""
    from chalicelib.models import now_ms
    from chalicelib.pages import checkout

    start = now_ms()
    view = {"status": "new", "exceptionStatus": False, "expirationTime": start + 15 * 60_000}
    elapsed, polls = 0, 0
    while True:
        seconds = checkout.poll_seconds({**view, "currentTime": start + elapsed})
        elapsed += seconds * 1000
        if elapsed > minutes * 60_000:
            return polls
        polls += 1


def paid_life() -> tuple[int, int]:
    """The watcher's checks of an invoice paid at its creation, and its writes of new confirmations alone.

    Run by the watcher's own schedule: every run while open and at the final check, then when
    `watcher.late_check_due` says so for its status. The payment is mined BLOCK_MINUTES later and gains a
    confirmation every BLOCK_MINUTES: a check that sees the first makes it confirmed (a status write),
    the sixth complete (off the watch); a check that sees others writes only the new confirmations.
    """
    from chalicelib.billing.stores import TARGET_CONFIRMATIONS
    from chalicelib.payments import watcher
    from chalicelib.payments.rules import CONFIRMATIONS_TO_COMPLETE
    from chalicelib.settings import get_settings

    minute, window = watcher.RUN_INTERVAL_MS, get_settings().monitoring_window_seconds * 1000
    expiration = OPEN_INVOICE_MINUTES * minute
    checks, confirmation_writes, recorded = 0, 0, 0
    for run in range(1, window // minute):
        confirmations = min(run // BLOCK_MINUTES, CONFIRMATIONS_TO_COMPLETE)
        status = "confirmed" if confirmations >= TARGET_CONFIRMATIONS["medium"] else "paid"
        final_check = (OPEN_INVOICE_MINUTES + 1) * minute
        invoice = watcher.Watched("x", status, expiration, final_check)
        if run * minute > final_check and not watcher.late_check_due(invoice, run * minute, window):
            continue
        checks += 1
        if confirmations != recorded and confirmations not in (1, CONFIRMATIONS_TO_COMPLETE):
            confirmation_writes += 1
        recorded = confirmations
        if confirmations == CONFIRMATIONS_TO_COMPLETE:
            break
    return checks, confirmation_writes


def watcher_checks(paid: bool) -> int:
    """Checks of one invoice: every run while open (15 minutes and the final one), then late checks."""
    from chalicelib.payments import watcher
    from chalicelib.settings import get_settings

    if paid:
        return paid_life()[0]
    window = get_settings().monitoring_window_seconds * 1000
    open_checks = OPEN_INVOICE_MINUTES + 1
    late = sum(
        watcher.late_check_due(watcher.Watched("x", "expired", 0, 1), age, window)
        for age in range(watcher.RUN_INTERVAL_MS, window + watcher.RUN_INTERVAL_MS, watcher.RUN_INTERVAL_MS)
    )
    return open_checks + late


# The local chain's Esplora stand-in, in a process of its own so that only the checker's CPU is counted.
_ESPLORA_CHILD = (
    "import sys\n"
    "sys.path.insert(0, {root!r})\n"
    "from scripts.local_chain import Chain, EsploraServer, WallClock\n"
    "print(EsploraServer(0, Chain(WallClock())).url, flush=True)\n"
    "sys.stdin.read()\n"
)


def check_cpu_ms(app, context, create, runs: int) -> float:
    """CPU of the watcher's check of one open invoice nobody paid yet, in a message of CHECK_BATCH,
    against the local chain's Esplora stand-in in another process."""
    import json
    import subprocess

    from chalicelib.payments import watcher
    from chalicelib.payments.esplora import EsploraClient

    ids = [json.loads(app(create(f"check-{n}"), context())["body"])["data"]["id"] for n in range(watcher.CHECK_BATCH)]
    child = [sys.executable, "-c", _ESPLORA_CHILD.format(root=str(ROOT))]
    with subprocess.Popen(child, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as server:
        try:
            client = EsploraClient(server.stdout.readline().strip(), concurrency=4, timeout=5)
            samples = []
            for _ in range(runs + 1):
                started = time.process_time()
                report = watcher.check(ids, client=client)
                samples.append((time.process_time() - started) * 1000 / len(ids))
                assert report.checked == len(ids) and not report.errors, report
        finally:
            server.stdin.close()
    return statistics.median(samples[1:])


def _prod_stage() -> dict:
    import json

    return json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"]


def stage_setting(name: str):
    """A setting of the prod stage (.chalice/config.json), None when it is not set."""
    return _prod_stage().get(name)


def function_memory_mb() -> dict[str, int]:
    """Each function's memory in the prod stage (.chalice/config.json); "api" is the API's."""
    stage = _prod_stage()
    functions = stage.get("lambda_functions", {})
    names = ("api", "check_payments", "deliver_notifications")
    return {
        name: functions.get(name, {}).get("lambda_memory_size", stage.get("lambda_memory_size", 128)) for name in names
    }


def static_files_linked() -> int:
    """The files the checkout page makes a browser fetch besides itself (its template's static links)."""
    template = (ROOT / "chalicelib" / "pages" / "templates" / "checkout_base.html").read_text()
    return len(re.findall(r"visit\.static\(", template))


def index_writes(
    model,
    changed: set[str],
    absent: frozenset[str] = frozenset(),
    entering: bool = False,
    leaving: frozenset[str] = frozenset(),
) -> int:
    """Index writes of one write of `model`'s item that changes the attributes `changed` (Python names).

    DynamoDB's rules for a global secondary index: an item enters it (a put) or leaves it (a delete)
    when its keys appear or go; a change of its keys is a delete and a put; any other change writes
    it only if the index projects a changed attribute. `absent`: the (sparse) indexes the item is not
    in; `entering`: the item is new; `leaving`: the indexes it leaves. Every index copy here is under
    1 KB: one unit a write.
    """
    from chalicelib.models import indexes

    writes = 0
    for index in indexes(model):
        projection, name = index.Meta.projection, index.Meta.index_name
        if name in absent:
            continue
        if entering or name in leaving:
            writes += 1
        elif set(index.Meta.attributes) & changed:
            writes += 2
        elif projection.projection_type == "ALL":
            writes += int(bool(changed))
        elif projection.projection_type == "INCLUDE":
            projected = {model.get_attributes()[a].attr_name for a in changed} & set(projection.non_key_attributes)
            writes += int(bool(projected))
    return writes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--esplora-ms", type=float, default=ESPLORA_ANSWER_MS)
    parser.add_argument("--ipn-ms", type=float, default=IPN_ANSWER_MS)
    args = parser.parse_args()

    cold_start, search_page = _load("cold_start"), _load("search_page")
    port = cold_start._free_port()
    environment = cold_start._environment(port)
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT))
    server = search_page._start_moto(port)
    try:
        import json

        from app import app
        from chalicelib.messaging import notifications
        from chalicelib.models import InvoiceModel, NotificationModel, now_ms
        from chalicelib.payments import watcher
        from chalicelib.security import tokens
        from chalicelib.settings import get_settings
        from tests.lambda_events import DEPLOYMENTS, proxy_event

        get_event, _ = cold_start._signed_events()
        invoice_id = get_event["pathParameters"]["invoice_id"]
        store_id = InvoiceModel.get(invoice_id).store_id
        # Shops' plugins mostly create with a pos token, unsigned; a signature check is a tenth of a ms.
        pos = tokens.claim(tokens.create_pairing_code(store_id, "pos").pairing_code, address="127.0.0.1").token
        status_event = proxy_event(DEPLOYMENTS[0], "GET", "/invoice/status", query=[("id", invoice_id)])
        page_event = proxy_event(DEPLOYMENTS[0], "GET", "/invoice", query=[("id", invoice_id)])
        static_event = proxy_event(DEPLOYMENTS[0], "GET", "/static/{name}", {"name": "paylambda.js"})

        class Context:
            function_name, memory_limit_in_mb, aws_request_id = "paylambda-bench-APIHandler", 512, "cost"

            def get_remaining_time_in_millis(self):
                return 30000

        sent: dict[str, bytes] = {}  # each route's response body

        def cpu_ms(make_event, route: str) -> float:
            samples = []
            for run in range(args.runs + 1):
                event = make_event(run)
                started = time.process_time()
                response = app(event, Context())
                samples.append((time.process_time() - started) * 1000)
                assert response["statusCode"] == 200, response
                body = response["body"]
                sent[route] = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
            return statistics.median(samples[1:])  # the first loads what the route imports

        def create(run: int) -> dict:
            order = {"price": 12.5, "currency": "USD", "token": pos, "orderId": f"cost-{run}"}
            return proxy_event(DEPLOYMENTS[0], "POST", "/invoices", body=json.dumps(order))

        create_ms = cpu_ms(create, "create")
        read_ms = cpu_ms(lambda run: get_event, "read")
        poll_ms = cpu_ms(lambda run: status_event, "poll")
        page_ms = cpu_ms(lambda run: page_event, "page")
        static_ms = cpu_ms(lambda run: static_event, "static")
        check_ms = check_cpu_ms(app, Context, create, args.runs)
        invoice = InvoiceModel.get(invoice_id, consistent_read=True)
        size = item_bytes(invoice.serialize())
        # A confirmed notification of this invoice, as the watcher writes it in its transaction.
        invoice.notification_url = "https://shop.example.com/bitpay/ipn"
        [notification] = notifications._outbox(
            invoice, [notifications.Event(*notifications.CONFIRMED, "confirmed")], now_ms()
        )
        notification_size = item_bytes(notification.serialize())
        sent["ipn"] = notification.body.encode()
    finally:
        server.kill()

    units = math.ceil(size / 1024)
    notification_units = math.ceil(notification_size / 1024)
    polls = polls_while_open(OPEN_CHECKOUT_MINUTES)
    statics = static_files_linked()
    status = {"status", "store_status", "version"}
    # What each of the watcher's writes changes, and whether the invoice leaves the watch index with it.
    # The first check that the chain answers after the expiry records it and moves the invoice from
    # the open watch partitions to the waiting ones (watcher._record).
    past_expiry = {"checked_after_expiry", "watch_network"}
    paid_writes = [
        (status | {"btc_paid_sats", "payments", "notification_count"}, False, True),  # paid, in the mempool
        (past_expiry | {"version"}, False, False),  # the first check after the expiry
        *[({"payments", "version"}, False, False)] * paid_life()[1],  # new confirmations the checks see
        (status | {"payments", "notification_count"}, False, True),  # confirmed, at the first block
        (status | {"payments", "notification_count", "watch_network", "next_check"}, True, True),  # complete
    ]
    unpaid_writes = [
        (status | past_expiry, False, False),  # expired, at the final check
        ({"watch_network", "next_check", "version"}, True, False),  # off the watch at the window's end
    ]
    not_indexed = frozenset({InvoiceModel.by_item_code.Meta.index_name})  # sparse, and the invoice has no itemCode

    def invoice_write_units(changed: set[str], leaves_watch: bool, in_transaction: bool) -> int:
        leaving = frozenset({InvoiceModel.by_watch.Meta.index_name}) if leaves_watch else frozenset()
        units_written = units + index_writes(InvoiceModel, changed, not_indexed, leaving=leaving)
        return units_written * (TRANSACTION_FACTOR if in_transaction else 1)

    def notification_write_units() -> int:
        outbox = frozenset({NotificationModel.by_outbox.Meta.index_name})
        put = notification_units + index_writes(NotificationModel, set(), entering=True)
        lease = notification_units + index_writes(NotificationModel, {"lease_until"})
        delivered = notification_units + index_writes(NotificationModel, {"state", "attempts"}, leaving=outbox)
        return put * TRANSACTION_FACTOR + lease + delivered

    creation_units = 1 + 1 + units + index_writes(InvoiceModel, set(), not_indexed, entering=True)

    def guaranteed_write_units(paid: bool, indexed: bool = True) -> int:
        """The writes no code of this service can save: its creation (the address's counter and
        claim, the invoice and its index entries), each status it reports and its leaving the watch,
        moving it in its indexes, and each notification recorded and marked delivered; with no
        transaction, no lease, and no write of an expiry or of a confirmation alone. Not `indexed`:
        the items alone, as if no index made invoices searchable, watched or notifications swept."""
        writes = [(changed, leaves) for changed, leaves, _ in (paid_writes if paid else unpaid_writes)]
        kept = [(changed, leaves) for changed, leaves in writes if "status" in changed or leaves]
        if not indexed:
            notified = NOTIFICATIONS_WHEN_PAID * 2 * notification_units if paid else 0
            return 2 + units + len(kept) * units + notified
        invoice = sum(invoice_write_units(changed, leaves, False) for changed, leaves in kept)
        outbox = frozenset({NotificationModel.by_outbox.Meta.index_name})
        notification = 2 * notification_units + index_writes(NotificationModel, set(), entering=True)
        notification += index_writes(NotificationModel, {"state"}, leaving=outbox)
        return creation_units + invoice + (NOTIFICATIONS_WHEN_PAID * notification if paid else 0)

    memory = function_memory_mb()

    def gb_seconds(function: str, cpu_ms: float, wait_ms: float) -> float:
        """Billed GB-s of CPU (stretched by the memory's share of a vCPU) and waits, at the function's memory."""
        megabytes = memory[function]
        return (cpu_ms / (megabytes / FULL_VCPU_MB) + wait_ms) / 1000 * megabytes / 1024

    smallest_compressed = stage_setting("minimum_compression_size")
    api_calls = 1 + SHOP_READS + 1 + statics + polls

    def out_bytes(body: bytes, compresses: bool) -> int:
        """What goes out for `body`: gzipped by a front that compresses, from the stage's minimum size on."""
        if compresses and smallest_compressed is not None and len(body) >= smallest_compressed:
            return len(gzip.compress(body))
        return len(body)

    def life(paid: bool, api_per_million: float, front: str) -> dict[str, float]:
        api_cpu_ms = create_ms + SHOP_READS * read_ms + page_ms + statics * static_ms + polls * poll_ms
        dynamodb_requests = 5 + SHOP_READS + 1 + polls
        checks = watcher_checks(paid)
        notified = NOTIFICATIONS_WHEN_PAID if paid else 0
        # Created by two plain writes (the address claim, the store's counter) and the invoice's put.
        writes = creation_units
        writes += sum(invoice_write_units(*write) for write in (paid_writes if paid else unpaid_writes))
        writes += notified * notification_write_units()
        # Strongly consistent GetItems of one unit (the token twice); the checker's eventually consistent
        # BatchGetItem, half a unit an invoice.
        reads = SHOP_READS + 1 + polls + 2 + checks / 2
        # A check message per CHECK_BATCH invoices, sent ten to a SendMessageBatch; received and
        # deleted by Lambda's event source mapping (counted one call each, though it batches too).
        # A notification's message: sent, received, deleted.
        sqs = checks / watcher.CHECK_BATCH * (1 / watcher.SEND_BATCH + 2) + notified * 3
        billed = (
            gb_seconds("api", api_cpu_ms, dynamodb_requests * DYNAMODB_WAIT_MS)
            + gb_seconds(
                "check_payments", checks * check_ms, checks * args.esplora_ms / get_settings().esplora_concurrency
            )
            # A delivery's CPU taken as a poll's (a Query and an UpdateItem or two); its wait, the shop's answer.
            + gb_seconds("deliver_notifications", notified * poll_ms, notified * args.ipn_ms)
        )
        invocations = api_calls + checks / watcher.CHECK_BATCH + notified
        # Response bodies (headers left out), and the IPNs posted to the shop. The REST front gzips
        # what the buyer's browser fetches (it accepts gzip; shops' PHP clients mostly do not).
        buyer = {"page": 1, "static": statics, "poll": polls}
        shop = {"create": 1, "read": SHOP_READS, "ipn": notified}
        sent_bytes = sum(count * len(sent[route]) for route, count in shop.items())
        sent_bytes += sum(
            count * out_bytes(sent[route], compresses=front == "REST API") for route, count in buyer.items()
        )
        return {
            "API Gateway": api_calls * api_per_million,
            "Lambda": invocations * LAMBDA_REQUEST_PER_MILLION + billed * LAMBDA_GB_SECOND * 1e6,
            "DynamoDB writes": writes * DYNAMODB_WRITE_UNIT_PER_MILLION,
            "DynamoDB reads": reads * DYNAMODB_READ_UNIT_PER_MILLION,
            "SQS": sqs * SQS_PER_MILLION,
            "Data transfer out": sent_bytes * 1e6 / 2**30 * TRANSFER_OUT_PER_GB,
        }

    print(
        f"measured: create {create_ms:.1f} ms, read {read_ms:.1f} ms, checkout page {page_ms:.1f} ms, static file "
        f"{static_ms:.1f} ms, poll {poll_ms:.1f} ms CPU (warm, median of {args.runs}); invoice item {size} B "
        f"({units} write unit), notification item {notification_size} B ({notification_units})"
    )
    print(
        f"checkout: the page, {statics} static files (cold cache), {polls} polls in {OPEN_CHECKOUT_MINUTES} min; "
        f"API requests per invoice: {api_calls}"
    )
    print(
        "bytes sent (bodies; gzipped by the REST front): "
        + ", ".join(f"{route} {len(body):,} ({out_bytes(body, True):,})" for route, body in sent.items())
    )
    paid_units = creation_units + sum(invoice_write_units(*write) for write in paid_writes)
    unpaid_units = creation_units + sum(invoice_write_units(*write) for write in unpaid_writes)
    print(
        f"write units per invoice: creation {creation_units}, paid life {paid_units} "
        f"+ {NOTIFICATIONS_WHEN_PAID} x {notification_write_units()} (notifications), unpaid life {unpaid_units}"
    )
    print(
        f"watcher checks per invoice: {watcher_checks(True)} paid, {watcher_checks(False)} unpaid, "
        f"{check_ms:.1f} ms CPU each (the checker's own); billed waits: Esplora "
        f"{args.esplora_ms:.0f} ms / {get_settings().esplora_concurrency} in flight, IPN {args.ipn_ms:.0f} ms"
    )

    def floor(paid: bool, api_per_million: float, indexed: bool = True) -> float:
        """The least this life costs whatever the code: its API requests and their Lambda invocations,
        and its guaranteed writes; no compute, read, check, queue or notification delivery."""
        writes = guaranteed_write_units(paid, indexed) * DYNAMODB_WRITE_UNIT_PER_MILLION
        return api_calls * (api_per_million + LAMBDA_REQUEST_PER_MILLION) + writes

    print(
        f"floor: the API requests and their Lambda invocations, and the guaranteed write units (no transaction, "
        f"lease, expiry or confirmation write): paid life {guaranteed_write_units(True)}, "
        f"unpaid {guaranteed_write_units(False)}; with no index at all {guaranteed_write_units(True, False)} and "
        f"{guaranteed_write_units(False, False)}"
    )

    def half_and_paid(cost, *args, **kwargs) -> tuple[float, float]:
        """`cost(paid, ...)` with half the invoices unpaid, and with all paid."""
        return (cost(True, *args, **kwargs) + cost(False, *args, **kwargs)) / 2, cost(True, *args, **kwargs)

    totals, floors = {}, {}
    for front, api_per_million in API_FRONTS_PER_MILLION.items():
        paid, unpaid = life(True, api_per_million, front), life(False, api_per_million, front)
        half = {name: (paid[name] + unpaid[name]) / 2 for name in paid}
        floors[front] = half_and_paid(floor, api_per_million)
        print(f"{'$ per million invoices, ' + front:34} {'half unpaid':>12} {'all paid':>10}")
        for name in paid:
            print(f"  {name:32} {half[name]:12.2f} {paid[name]:10.2f}")
        totals[front] = (sum(half.values()), sum(paid.values()))
        print(f"  {'total':32} {totals[front][0]:12.2f} {totals[front][1]:10.2f}")
        print(f"  {'floor (whatever the code)':32} {floors[front][0]:12.2f} {floors[front][1]:10.2f}")
        bare = half_and_paid(floor, api_per_million, indexed=False)
        print(f"  {'floor with no index at all':32} {bare[0]:12.2f} {bare[1]:10.2f}")
    print(f"  target <= ${TARGET_HALF_UNPAID:.0f} half unpaid, <= ${TARGET_ALL_PAID:.0f} all paid")
    method = "list prices x measured warm CPU, item sizes, index fan-out, poll and watcher schedules"
    met = True
    for front, (total_half, total_paid) in totals.items():
        half_met, paid_met = total_half <= TARGET_HALF_UNPAID, total_paid <= TARGET_ALL_PAID
        met = met and half_met and paid_met
        floor_half, floor_paid = floors[front]
        figure(
            f"$/M invoices, half unpaid, {front}",
            f"${total_half:.2f}",
            f"<= ${TARGET_HALF_UNPAID:.0f}",
            f"~${BASELINE_HALF_UNPAID:.0f} (issue), {BASELINE_BEFORE.split(' / ')[0]} (main)",
            half_met,
            f"{method}; floor ${floor_half:.2f} (requests and guaranteed writes alone)",
        )
        figure(
            f"$/M invoices, all paid, {front}",
            f"${total_paid:.2f}",
            f"<= ${TARGET_ALL_PAID:.0f}",
            f"{BASELINE_BEFORE.split(' / ')[1]} (main)",
            paid_met,
            f"{method}; floor ${floor_paid:.2f} (requests and guaranteed writes alone)",
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
