"""The watcher at scale: 10,000 watched invoices against a rate-limited Esplora server.

The real planner and checkers (chalicelib.payments.watcher) run against moto's DynamoDB and SQS
and the suite's Esplora-compatible server answering after 200 ms and refusing (429)
more than 20 requests a second. Of the 10,000 watched invoices, 1,000 are open and
expire within the next 90 s, 500 of them get paid at random moments (50 a second
before their expiry); 8,500 expired unpaid and 500 paid ones wait past their expiry
(late payments, confirmations), at ages spread over the monitoring window. Time is
simulated: each cycle is one planner run at the next minute, and two checkers (the
stack's default MaximumConcurrency), each a process of its own as a Lambda container is,
take the queued messages as Lambda's event source hands them over, from the moment the
planner queues its first (it queues the open invoices, kept in partitions of their own,
before it reads the waiting ones), each with 8 Esplora requests in flight at most, paced
to its share of 19 requests/s (ESPLORA_RATE_LIMIT, a little under the server's limit),
in real time against the server.

    PYTHONPATH=. python bench/watcher_scale.py

Prints per cycle the planner's figures, the checkers' and Esplora's, then the money
figures (on-time payments judged late, missed, double-counted) and DynamoDB writes.
"""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _figures import figure  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MOTO = f"http://127.0.0.1:{_free_port()}"
# SQS in a moto of its own: moto answers every service in one Python process, where a planner's Query
# over thousands of items holds up a queue's calls as DynamoDB's never would SQS's on AWS.
MOTO_SQS = f"http://127.0.0.1:{_free_port()}"
ESPLORA_PORT = _free_port()
# moto answers a Query over 10,000 items far slower than DynamoDB, more so on a busy machine.
PYNAMODB_CONFIG = os.path.join(tempfile.mkdtemp(), "pynamodb_settings.py")
with open(PYNAMODB_CONFIG, "w") as config:
    config.write("read_timeout_seconds = 600\n")
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DYNAMODB_ENDPOINT": MOTO,
        "PYNAMODB_CONFIG": PYNAMODB_CONFIG,
        "AWS_ENDPOINT_URL_SQS": MOTO_SQS,
        "STAGE": "bench",
        "BITCOIN_NETWORK": "main",
        "ESPLORA_URL": f"http://127.0.0.1:{ESPLORA_PORT}",
        # Each checker keeps up to 8 requests in flight (an answer can take longer than the 200 ms on a busy
        # machine), paced to its half of a little under the server's limit: no more than that reaches it.
        "ESPLORA_CONCURRENCY": "8",
        "ESPLORA_RATE_LIMIT": "19",
        "CHECK_CONCURRENCY": "2",
        "CHECKS_QUEUE": "paylambda-bench-checks",
        "NOTIFICATIONS_QUEUE": "paylambda-bench-notifications",
    }
)

# As the checkers' processes get it: tests.payments_support, imported later for its clock, sets the suite's own.
BENCH_ENVIRONMENT = dict(os.environ)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINUTE = 60_000
OPEN, PAID, WAITING, WAITING_PAID = 1_000, 500, 8_500, 500
PAID_LAST_SECOND = 50
CHECKERS = int(os.environ["CHECK_CONCURRENCY"])
LATENCY_SECONDS, RATE_LIMIT = 0.2, 20
CYCLES = 3
DUE = 15_385
# The watcher before this change (git history): every run read every due invoice whole, and rewrote each
# expired one in full every 10 minutes to move next_check, which also rewrote its ALL-projected watch index entry.
OLD_LATE_REWRITES_PER_HOUR = 6


def item_write_units(invoice) -> int:
    """DynamoDB's write units for an item: one per KB of attribute names and values (its billing rule)."""
    size = sum(len(name) + len(str(value)) for name, value in invoice.serialize().items())
    return -(-size // 1024)


def build(clock, chain):
    from chalicelib.models import InvoiceModel, PaymentAttribute, watch_partition

    rng = random.Random(7)
    t0 = clock.now
    invoices, payments = [], []
    for number in range(OPEN + WAITING + WAITING_PAID):
        invoice_id = f"bench{number:06d}"
        address = f"bc1qbench{number:06d}"
        # Open ones expire within 90 s; the others did up to a day ago.
        ago = -rng.randrange(0, 90_000) if number < OPEN else rng.randrange(MINUTE, 24 * 60 * MINUTE)
        expiration = t0 - ago
        invoice = InvoiceModel(
            invoice_id,
            store_id="benchstore",
            token="benchtoken",
            facade="merchant",
            created=expiration - 15 * MINUTE,
            expiration=expiration,
            status="new",
            price="10",
            currency="USD",
            rate="65000",
            btc_due_sats=DUE,
            address=address,
            invoice_token="benchinvoicetoken",
            address_index=number,
            transaction_speed="medium",
            store_status="benchstore#new",
            watch_network=watch_partition("main", invoice_id, urgent=number < OPEN),
            next_check=expiration - 15 * MINUTE,
        )
        if number >= OPEN:
            invoice.status, invoice.store_status = "expired", "benchstore#expired"
            invoice.checked_after_expiry = expiration + 30_000
        if number >= OPEN + WAITING:
            txid = chain.pay(address, DUE)
            invoice.status, invoice.store_status, invoice.btc_paid_sats = "paid", "benchstore#paid", DUE
            invoice.payments = [PaymentAttribute(txid=txid, vout=0, amount=DUE, confirmations=0,
                                                 first_seen=expiration - MINUTE, late=False)]  # fmt: skip
            invoice.checked_after_expiry = expiration + 30_000
        invoices.append(invoice)
    with InvoiceModel.batch_write() as batch:
        for invoice in invoices:
            batch.save(invoice)
    paid = rng.sample(invoices[:OPEN], PAID)
    for number, invoice in enumerate(paid):
        moment = (
            invoice.expiration - 1000 if number < PAID_LAST_SECOND else rng.randrange(t0 - MINUTE, invoice.expiration)
        )
        payments.append((moment, invoice))
    return invoices, sorted(payments, key=lambda payment: payment[0]), item_write_units(invoices[-1])


class Writes:
    """DynamoDB writes the watcher makes, counted at the SDK (every client pynamodb uses)."""

    def __init__(self):
        self.requests = 0
        self.lock = threading.Lock()

    def __call__(self, **_):
        with self.lock:
            self.requests += 1

    def listen(self, client) -> None:
        for operation in ("UpdateItem", "PutItem", "TransactWriteItems"):
            client.meta.events.register(f"after-call.dynamodb.{operation}", self)


# One checker, as a Lambda container runs it: a process of its own, warm from cycle to cycle. A line
# "<now>" on stdin starts a cycle; "planned" says the planner has queued all it will; the checker
# answers with a line of JSON once the queue is empty after that.
_CHECKER = """
import json, logging, os, queue, sys, threading, time
import boto3
from chalicelib import jobs, models
from chalicelib.payments import watcher

logging.getLogger("chalicelib").setLevel(logging.ERROR)
writes = [0]
for operation in ("UpdateItem", "PutItem", "TransactWriteItems"):
    models.shared_connection().client.meta.events.register(
        f"after-call.dynamodb.{operation}", lambda **_: writes.__setitem__(0, writes[0] + 1)
    )
sqs = boto3.client("sqs", region_name="us-east-1")
url = os.environ["CHECKS_QUEUE_URL"]
commands = queue.Queue()
def read_commands():
    for line in sys.stdin:
        commands.put(line.split())
    commands.put(["quit"])  # the bench has gone


threading.Thread(target=read_commands, daemon=True).start()
while (command := commands.get())[0] != "quit":
    now, planned, idle, invocations, open_done, writes[0] = int(command[0]), False, 0, 0, 0.0, 0
    while idle < 2:
        while not planned and not commands.empty():
            planned = commands.get()[0] == "planned"
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=jobs.CHECK_MESSAGES_PER_INVOCATION)
        messages = messages.get("Messages", [])
        if not messages:
            idle += planned
            time.sleep(0 if planned else 0.05)
            continue
        idle = 0
        watcher.handle_messages([(m["MessageId"], m["Body"]) for m in messages], now)
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        invocations += 1
        if any('"open": true' in m["Body"] for m in messages):
            open_done = time.time()
    print(json.dumps({"invocations": invocations, "open_done": open_done, "writes": writes[0]}), flush=True)
"""


class Checkers:
    """CHECKERS checkers (the stack's default MaximumConcurrency), each in a process of its own, taking the
    queued messages as the event source hands them over from the moment the planner starts (Lambda runs
    them while it is still reading), until the queue is empty after the plan."""

    def __init__(self, checks_url: str):
        environment = {**BENCH_ENVIRONMENT, "CHECKS_QUEUE_URL": checks_url, "PYTHONPATH": ROOT}
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-c", _CHECKER],
                cwd=ROOT,
                env=environment,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )  # fmt: skip
            for _ in range(CHECKERS)
        ]

    def _tell(self, line: str) -> None:
        for process in self.processes:
            process.stdin.write(line + "\n")
            process.stdin.flush()

    def start(self, now: int) -> None:
        self._tell(str(now))

    def finish(self, cycle_start: float) -> tuple[int, float, int]:
        """(invocations, seconds from the cycle's start until the last open invoice was checked, writes)."""
        self._tell("planned")
        answers = [json.loads(process.stdout.readline()) for process in self.processes]
        open_done = max(answer["open_done"] for answer in answers)
        total = {name: sum(answer[name] for answer in answers) for name in ("invocations", "writes")}
        return total["invocations"], max(0.0, open_done - cycle_start), total["writes"]

    def close(self) -> None:
        self._tell("quit")
        for process in self.processes:
            process.wait(timeout=30)


_MOTO = """
import time
from scripts.local_aws import start_local_aws
start_local_aws({port})
time.sleep(3600)
"""


def _wait_for(url: str) -> None:
    from urllib.request import urlopen

    for _ in range(100):
        try:
            urlopen(url, timeout=1).close()
            return
        except OSError as exc:
            if getattr(exc, "code", None):
                return  # it answers
            time.sleep(0.1)
    raise SystemExit(f"moto did not start on {url}")


def main() -> int:
    import logging

    logging.getLogger("chalicelib").setLevel(logging.ERROR)
    # In a process of its own, so that the planner's time and memory measured here are the planner's.
    motos = [
        subprocess.Popen([sys.executable, "-c", _MOTO.format(port=int(url.rsplit(":", 1)[1]))], cwd=ROOT)
        for url in (MOTO, MOTO_SQS)
    ]
    try:
        for url in (MOTO, MOTO_SQS):
            _wait_for(url)
        return bench()
    finally:
        for moto in motos:
            moto.terminate()


def bench() -> int:
    import boto3

    from chalicelib import models
    from chalicelib.models import InvoiceModel, create_tables
    from chalicelib.payments import watcher
    from chalicelib.settings import get_settings
    from scripts.local_chain import Chain, EsploraServer
    from tests.payments_support import FakeClock

    # tests.payments_support points SQS at the DynamoDB endpoint, as the suite's one moto serves both.
    os.environ["AWS_ENDPOINT_URL_SQS"] = MOTO_SQS
    create_tables()
    sqs = boto3.client("sqs", region_name="us-east-1")
    # The settings were read before tests.payments_support set the suite's own queue names.
    settings = get_settings()
    checks_url = sqs.create_queue(QueueName=settings.checks_queue)["QueueUrl"]
    sqs.create_queue(QueueName=settings.notifications_queue)
    clock = FakeClock()
    chain = Chain(clock)
    server = EsploraServer(ESPLORA_PORT, chain, latency=LATENCY_SECONDS, rate_limit=RATE_LIMIT)
    started = time.perf_counter()
    invoices, payments, unit = build(clock, chain)
    print(f"setup: {len(invoices)} watched invoices written in {time.perf_counter() - started:.0f} s")
    writes = Writes()
    # Every model and transaction speaks through this one client.
    writes.listen(models.shared_connection().client)
    address_of = {invoice.invoice_id: invoice.address for invoice in invoices}

    print(f"{'cycle':>5} {'open':>5} {'late':>5} {'deferred':>8} {'plan s':>7} {'plan CPU':>8} {'invocations':>11} "
          f"{'open done s':>11} {'cycle s':>8} {'esplora/min':>11} {'429s':>5} {'writes':>6}")  # fmt: skip
    t0 = clock.now
    missed_open, slowest_open, esplora_rates = 0, 0.0, []
    checkers = Checkers(checks_url)
    for cycle in range(CYCLES):
        clock.now = t0 + cycle * MINUTE
        while payments and payments[0][0] <= clock.now:
            _, invoice = payments.pop(0)
            chain.pay(invoice.address, DUE)
        chain.requests.clear()  # a bounded log: each cycle's own requests
        refused_before, writes_before = server.refused, writes.requests
        cycle_start = time.time()
        planned_at, planner_cpu = time.perf_counter(), time.process_time()
        checkers.start(clock.now)
        plan = watcher.plan(clock.now)
        # This process also serves Esplora to the checkers: the planner's CPU here is an upper bound.
        plan_seconds, plan_cpu = time.perf_counter() - planned_at, time.process_time() - planner_cpu
        invocations, open_done, checker_writes = checkers.finish(cycle_start)
        writes.requests += checker_writes
        cycle_seconds = time.time() - cycle_start
        asked = {path.split("/")[2] for path in chain.requests if path.startswith("/address/")}
        missed_open += sum(1 for invoice_id in plan.open if address_of[invoice_id] not in asked)
        requests = len(chain.requests)
        slowest_open = max(slowest_open, open_done)
        esplora_rates.append(requests / cycle_seconds * 60)
        print(f"{cycle:>5} {len(plan.open):>5} {len(plan.late):>5} {plan.deferred:>8} {plan_seconds:>7.2f} "
              f"{plan_cpu:>8.2f} {invocations:>11} {open_done:>11.1f} {cycle_seconds:>8.1f} "
              f"{requests / cycle_seconds * 60:>11.0f} {server.refused - refused_before:>5} "
              f"{writes.requests - writes_before:>6}")  # fmt: skip

    checkers.close()
    # The planner on its own, as the scheduled function runs it (its queueing aside): one more plan, not checked.
    alone_at, alone_cpu = time.perf_counter(), time.process_time()
    watcher.plan(clock.now, send=False)
    alone_seconds, alone_cpu = time.perf_counter() - alone_at, time.process_time() - alone_cpu
    # Its memory, traced apart (tracing slows it down several times).
    tracemalloc.start()
    watcher.plan(clock.now, send=False)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    judged_late = missed = double = 0
    paid_ids = {invoice.invoice_id for invoice in invoices[:OPEN] if chain.transactions(invoice.address)[0]}
    for invoice in InvoiceModel.batch_get(sorted(paid_ids)):
        judged_late += invoice.exception_status == "paidLate" or invoice.status == "expired"
        missed += invoice.btc_paid_sats == 0
        double += invoice.btc_paid_sats > DUE or len(invoice.payments) > 1
    open_never_paid = [
        i for i in InvoiceModel.batch_get([i.invoice_id for i in invoices[:OPEN]]) if i.invoice_id not in paid_ids
    ]
    unexpired = sum(1 for invoice in open_never_paid if invoice.status != "expired")
    hours = CYCLES / 60
    print(
        f"\npaid before expiry: {len(paid_ids)} (target {PAID}); judged late: {judged_late} (target 0); "
        f"missed: {missed} (target 0); double-counted: {double} (target 0)"
    )
    print(
        f"open invoices not checked in a run while open: {missed_open} (target 0); "
        f"unpaid ones not expired by their final check: {unexpired} (target 0)"
    )
    print(
        f"item size: {unit} write unit(s). DynamoDB write units per watched invoice per hour, measured here: "
        f"{writes.requests * unit / len(invoices) / hours:.2f} (the writes of open invoices that changed)"
    )
    waiting_before = OLD_LATE_REWRITES_PER_HOUR * unit * 5
    print(
        f"  an invoice waiting past its expiry: before {waiting_before} (6 rewrites an hour, each the item, its "
        "watch index entry deleted and put, and its 2 other ALL-projected index entries), "
        "after 0 (a late check that finds nothing writes nothing)"
    )
    print(
        f"Esplora before: every run asked each open invoice and each expired one every 10 minutes "
        f"({OPEN + (WAITING + WAITING_PAID) // 10}/min wanted, ~800/min done within its 40 s budget at 20 req/s)"
    )
    print(
        f"planner alone: {alone_seconds:.1f} s, of it {alone_cpu:.2f} s CPU in this process (moto runs apart), "
        f"peak Python memory {peak:.1f} MB for {len(invoices)} watched (targets < 5 s, < 128 MB); in the cycles, "
        "plan s includes moto's Query time and plan CPU the checkers running beside it"
    )
    print("targets: open done < 60 s per cycle; planner < 5 s; Esplora within 20 req/s (1,200/min)")
    method = "bench/watcher_scale.py: 10,000 watched, 200 ms Esplora at 20 req/s, moto"
    figure(
        "watcher: open invoices checked",
        f"{slowest_open:.1f} s",
        "< 60 s",
        "668 of 1,500 per run",
        slowest_open < 60,
        method,
    )
    money_wrong = judged_late + missed + double + missed_open + unexpired
    figure("watcher: on-time judged late, missed, double", f"{judged_late}, {missed}, {double}", "0, 0, 0",
           "on-time judged late under backlog", money_wrong == 0, method)  # fmt: skip
    # moto answers these Queries in seconds where DynamoDB takes milliseconds a page: the planner's own share
    # of its time is its CPU, measured in its process; the wall time on moto is printed beside it.
    figure("watcher: planner for 10,000", f"{alone_cpu:.2f} s CPU ({alone_seconds:.0f} s on moto), {peak:.0f} MB",
           "< 5 s, < 128 MB", "~7 s CPU decoding", alone_cpu < 5 and peak < 128, method)  # fmt: skip
    figure(
        "watcher: Esplora requests/min",
        f"{max(esplora_rates):.0f}",
        "<= 1,200",
        "~800",
        max(esplora_rates) <= 1200,
        method,
    )
    server.shutdown()
    return 0 if judged_late == missed == double == missed_open == unexpired == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
